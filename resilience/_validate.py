"""Validation shared by every policy: configuration fails at construction, naming the parameter."""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = [
    "ExceptionFilter",
    "check_duration",
    "check_positive_int",
    "check_ratio",
    "exception_predicate",
]

# What ``on=`` / ``failure_on=`` accept: an exception class, a tuple of them, or a predicate.
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


def check_ratio(value: float, name: str, *, allow_zero: bool = False) -> None:
    """Reject a ratio outside (0, 1] (or [0, 1] with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise TypeError(f"{name} must be a number in (0, 1], got {value!r}")
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value <= 1):
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
