"""Validation shared by every policy: configuration fails at construction, naming the parameter."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

__all__ = [
    "ExceptionFilter",
    "check_duration",
    "check_name",
    "check_positive_int",
    "check_queue",
    "check_ratio",
    "exception_predicate",
    "refuse_unknown",
]

# What ``on=`` accepts: an exception class, a tuple of them, or a predicate.
ExceptionFilter = (
    type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
)


def exception_predicate(on: ExceptionFilter, name: str) -> Callable[[BaseException], bool]:
    """Compile ``on=`` into one predicate; reject anything else naming the parameter ``name``."""
    if isinstance(on, type) and issubclass(on, BaseException):
        types: tuple[type[BaseException], ...] = (on,)
    elif isinstance(on, tuple):
        if not on or not all(isinstance(t, type) and issubclass(t, BaseException) for t in on):
            raise TypeError(
                f"{name} must be an exception class, a tuple of them or a predicate, got {on!r}"
            )
        types = on
    elif isinstance(on, type):  # a class that is not an exception (on=str) is no predicate
        raise TypeError(
            f"{name} must be an exception class, a tuple of them or a predicate, got {on!r}"
        )
    elif callable(on):
        return on
    else:
        raise TypeError(
            f"{name} must be an exception class, a tuple of them or a predicate, got {on!r}"
        )

    def is_instance(exc: BaseException) -> bool:
        return isinstance(exc, types)

    return is_instance


def check_duration(value: float | None, name: str, *, allow_zero: bool = True) -> None:
    """Reject a duration that is negative (or zero), infinite or not a number."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    if math.isnan(value) or math.isinf(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number of seconds {bound}, got {value!r}")


def check_positive_int(value: int | None, name: str, *, minimum: int = 1) -> None:
    """Reject an integer below ``minimum`` (or anything that is not an int)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")


def check_queue(max_waiting: int, max_wait: float | None) -> None:
    """Check a queue's settings (Bulkhead, AdaptiveConcurrency): room for ``max_waiting``
    calls, each waiting at most ``max_wait`` seconds (``None``: no limit of its own)."""
    check_positive_int(max_waiting, "max_waiting", minimum=0)
    check_duration(max_wait, "max_wait")
    if max_waiting and max_wait == 0.0:
        raise ValueError(
            "max_wait must be > 0 (or None for no limit) when max_waiting > 0, got 0.0"
        )
    if not max_waiting and max_wait:
        raise ValueError(f"max_wait has no effect without max_waiting > 0, got {max_wait!r}")


def check_ratio(value: float, name: str, *, allow_zero: bool = False) -> None:
    """Reject a ratio outside (0, 1] (or [0, 1] with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise TypeError(f"{name} must be a number in (0, 1], got {value!r}")
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value <= 1):
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")


def check_name(
    name: str | None,
    default: str,
    *,
    shared: bool = False,
    kind: str | None = None,
    why: str | None = None,
) -> str:
    """The policy's name: ``name``, or its kind (``default``, e.g. "circuit_breaker") when it
    is ``None`` and the state is private.

    A policy whose state is shared through a store (replicas meet under its name) must be
    named: two unnamed policies of unrelated services would otherwise share one state.
    ``kind`` (with its article: "a circuit breaker") and ``why`` (what sharing an unnamed one
    would do) default to words built from ``default``.
    """
    if name is None:
        if shared:
            plain = default.replace("_", " ")
            kind = kind or f"a {plain}"
            why = why or (
                f"every replica with the same name shares one {plain}, so unnamed ones of "
                "unrelated services would share one state and trip each other"
            )
            raise ValueError(
                f"name is required for {kind} whose state is shared through a store: {why}; "
                "pass e.g. name='payments-api'"
            )
        return default
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    return name


def refuse_unknown(kind: str, given: Mapping[str, object], renamed: Mapping[str, str]) -> None:
    """Raise ``TypeError`` for keywords ``kind`` does not take; a renamed one names its successor.

    Called with a constructor's ``**given`` (typed ``NoReturn``, so type checkers flag the same
    calls): the public surface is 0.x and renames keywords without aliases.
    """
    for old in given:
        new = renamed.get(old)
        if new is not None:
            raise TypeError(f"{kind}() takes {new}= where it took {old}= (renamed): pass {new}=")
        raise TypeError(f"{kind}() got an unexpected keyword argument {old!r}")
