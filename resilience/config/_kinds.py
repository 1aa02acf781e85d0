"""The kinds of policy a configuration can build, and how a table becomes one.

A kind's options are its class's keyword arguments, read from the signature, so a new option of
a policy is configurable the day it lands. Options that take a function (``on_result``,
``handler``...) and the clock cannot come from a file; they are passed in code. The class's own
checks judge every value; their message (``attempts must be >= 1, got -1``) becomes a
``ConfigError`` at the option's path.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from resilience import (
    AdaptiveConcurrency,
    AdaptiveThrottle,
    AimdLimit,
    Backoff,
    Bulkhead,
    CircuitBreaker,
    Deadline,
    Fallback,
    Gradient2Limit,
    Hedge,
    RateLimiter,
    Retry,
    RetryBudget,
    Timeout,
    VegasLimit,
    WindowedLimit,
)
from resilience._clock import Clock
from resilience.config._values import (
    ConfigError,
    Origins,
    as_mapping,
    duration,
    exception_classes,
    join,
)

__all__ = ["KINDS", "PIPELINE_ORDER", "Kind", "Resolver", "build", "build_policy", "options"]


class Resolver(Protocol):
    """What building needs from the registry: its clock, its named stores, its shared budgets."""

    clock: Any
    origins: Origins

    def store(self, name: object, path: str) -> Any: ...

    def budget(self, name: str, path: str) -> RetryBudget: ...


# Options that are seconds: a number, or a string such as "250ms" or "5s".
_DURATIONS = frozenset(
    {
        "seconds",
        "open_for",
        "window",
        "slow_call_duration",
        "trial_lease",
        "max_wait",
        "delay",
        "initial",
        "maximum",
        "per",
        "timeout",
        "min_window",
        "max_window",
        "min_delay",
    }
)
# Options that name exception classes.
_EXCEPTIONS = frozenset({"on", "drop_on", "rejected_on"})
# Options never read from a file: the clock is the registry's; randomness stays seedable in code.
_CODE_ONLY = frozenset({"clock", "rng"})


@dataclass(frozen=True)
class Kind:
    """One configurable class: ``scalar`` is the option a bare value sets (``timeout = 1.0``)."""

    key: str
    cls: type[Any]
    scalar: str | None = None
    special: Mapping[str, Callable[[object, str, Resolver], object]] = field(default_factory=dict)

    def parameters(self) -> dict[str, inspect.Parameter]:
        """The class's keyword arguments, without ``*args`` / ``**kwargs``."""
        return {
            name: parameter
            for name, parameter in inspect.signature(self.cls).parameters.items()
            if parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
        }

    def code_only(self) -> frozenset[str]:
        """The options a file cannot set: functions, the clock, a random generator."""
        return frozenset(
            name
            for name, parameter in self.parameters().items()
            if name in _CODE_ONLY or "Callable" in str(parameter.annotation)
        )


def _backoff(value: object, path: str, resolver: Resolver) -> object:
    return build(BACKOFF, value, path, resolver)


def _budget(value: object, path: str, resolver: Resolver) -> object:
    if isinstance(value, str):
        return resolver.budget(value, path)  # shared: every retry naming it gets the same one
    return build(KINDS["retry_budget"], value, path, resolver)


def _algorithm(value: object, path: str, resolver: Resolver) -> object:
    if isinstance(value, str):
        value = {value: {}}
    table = as_mapping(value, path, resolver.origins)
    if len(table) != 1 or next(iter(table)) not in _ALGORITHMS:
        raise ConfigError(
            path, f"must be one of {sorted(_ALGORITHMS)} (with its options), got {value!r}"
        )
    ((name, options),) = table.items()
    return build(_ALGORITHMS[name], options, join(path, name), resolver)


def _hedge_delay(value: object, path: str, resolver: Resolver) -> object:
    """Seconds, a duration, or a latency percentile the hedge tracks (``"p95"``)."""
    if isinstance(value, str) and re.fullmatch(r"p\d+(\.\d+)?", value):
        return value
    return duration(value, path, resolver.origins)


def _store(value: object, path: str, resolver: Resolver) -> object:
    return resolver.store(value, path)


BACKOFF = Kind("backoff", Backoff)
_ALGORITHMS = {
    "vegas": Kind("vegas", VegasLimit),
    "gradient2": Kind("gradient2", Gradient2Limit),
    "aimd": Kind("aimd", AimdLimit),
    "windowed": Kind("windowed", WindowedLimit, special={"algorithm": _algorithm}),
}
_STORE = {"store": _store}

KINDS: dict[str, Kind] = {
    kind.key: kind
    for kind in (
        Kind("fallback", Fallback),
        Kind("deadline", Deadline, scalar="seconds"),
        Kind("retry", Retry, special={"backoff": _backoff, "budget": _budget}),
        Kind("hedge", Hedge, scalar="delay", special={"delay": _hedge_delay, "budget": _budget}),
        Kind("adaptive_throttle", AdaptiveThrottle),
        Kind("circuit_breaker", CircuitBreaker, special=_STORE),
        Kind("rate_limiter", RateLimiter, special=_STORE),
        Kind("adaptive_concurrency", AdaptiveConcurrency, special={"algorithm": _algorithm}),
        Kind("bulkhead", Bulkhead, scalar="max_concurrent"),
        Kind("timeout", Timeout, scalar="seconds"),
        Kind("retry_budget", RetryBudget, special=_STORE),
    )
}
# The order a dependency's policies nest in when the configuration gives no pipeline for it:
# outermost first (a fallback sees everything; the deadline spans the retries; each attempt
# passes the breaker, limits and bulkhead; the timeout bounds one attempt).
PIPELINE_ORDER = tuple(key for key in KINDS if key != "retry_budget")


def build(
    kind: Kind,
    value: object,
    path: str,
    resolver: Resolver,
    *,
    name: str | None = None,
    base: tuple[object, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Any:
    """An instance of ``kind`` from ``value`` (a table, or a bare value for ``kind.scalar``) at
    ``path``, laid over ``base`` (shared settings and their path); named ``name`` unless a table
    names it; ``overrides`` (code-only options, from code) win over everything."""
    layers = [base] if base is not None else []
    layers.append((value, path))
    arguments: dict[str, Any] = {}
    source: dict[str, str] = {}  # option -> the path of the table that set it
    for layer_value, layer_path in layers:
        given = options(kind, layer_value, layer_path, resolver)
        arguments.update(given)
        source.update(dict.fromkeys(given, layer_path))
    parameters = kind.parameters()
    if name is not None and "name" in parameters and "name" not in arguments:
        arguments["name"] = name
    if "clock" in parameters and resolver.clock is not None:
        arguments["clock"] = resolver.clock
    arguments.update(overrides or {})
    try:
        return kind.cls(**arguments)
    except (TypeError, ValueError) as exc:
        raise _located(exc, path, source, resolver.origins) from None


def options(kind: Kind, value: object, path: str, resolver: Resolver) -> dict[str, Any]:
    """The keyword arguments a table gives ``kind``, converted (durations, exception names,
    nested objects), each option checked against the class's signature."""
    origins = resolver.origins
    if kind.scalar is not None and not isinstance(value, Mapping):
        value = {kind.scalar: value}
    table = as_mapping(value, path, origins)
    parameters = kind.parameters()
    code_only = kind.code_only()
    arguments: dict[str, Any] = {}
    for option, raw in table.items():
        where = join(path, option)
        if option in code_only:
            raise ConfigError(
                where,
                f"cannot come from configuration ({option} takes a function or an object); "
                "pass it in code when you get the policy from the registry",
                origins,
            )
        if option not in parameters:
            close = difflib.get_close_matches(option, parameters, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            known = ", ".join(sorted(set(parameters) - code_only))
            raise ConfigError(where, f"unknown option{hint}; {kind.key} takes: {known}", origins)
        arguments[option] = _convert(kind, option, raw, where, resolver)
    return arguments


def _convert(kind: Kind, option: str, raw: object, where: str, resolver: Resolver) -> object:
    special = kind.special.get(option)
    if special is not None:
        return special(raw, where, resolver)
    if option in _DURATIONS:
        return duration(raw, where, resolver.origins)
    if option in _EXCEPTIONS:
        return exception_classes(raw, where, resolver.origins)
    return raw


def _located(exc: Exception, path: str, source: Mapping[str, str], origins: Origins) -> ConfigError:
    """The class's own message at the path of the option it names (``attempts must be ...``
    -> ``<table>.attempts: must be ...``), or at the table's path."""
    if isinstance(exc, ConfigError):
        return exc
    message = str(exc)
    option, _, rest = message.partition(" ")
    if option in source and rest:
        return ConfigError(join(source[option], option), rest, origins)
    return ConfigError(path, message, origins)


class _Alone:
    """What building one policy outside a registry can resolve: stores given by name."""

    def __init__(self, stores: Mapping[str, Any] | None, clock: Clock | None) -> None:
        self.clock = clock
        self.origins: Origins = {}
        self._stores = dict(stores or {})

    def store(self, name: object, path: str) -> Any:
        if not isinstance(name, str) or name not in self._stores:
            known = ", ".join(sorted(self._stores)) or "none were given"
            raise ConfigError(path, f"names no store given to build_policy ({known})")
        return self._stores[name]

    def budget(self, name: str, path: str) -> Any:
        raise ConfigError(path, "a budget by name needs a Registry; give a table here instead")


def build_policy(
    kind: str,
    settings: object,
    *,
    name: str | None = None,
    stores: Mapping[str, Any] | None = None,
    clock: Clock | None = None,
    **code: Any,
) -> Any:
    """One policy of ``kind`` (``"retry"``, ``"circuit_breaker"``, ``"retry_budget"`` or another
    of ``PIPELINE_ORDER``) from
    ``settings`` (its table, or a bare value for ``timeout``, ``deadline``, ``hedge`` and
    ``bulkhead``); ``code`` holds the options that take functions. Errors name the key's path
    from ``kind`` (``retry.backoff.maximum: ...``)."""
    if kind not in KINDS:
        raise ConfigError(kind, f"unknown kind; expected one of {', '.join(KINDS)}")
    return build(KINDS[kind], settings, kind, _Alone(stores, clock), name=name, overrides=code)
