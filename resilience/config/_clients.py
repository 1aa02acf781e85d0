"""``clients.<name>``: an httpx client with a resilient transport, from a table.

Policy options (``retry``, ``breaker``, ``bulkhead``, ``hedge``) are a policy's name in the
registry (``"payments"``), an inline table, or ``false`` for none; durations may be strings;
``limits`` is a table of ``httpx.Limits``; the other keys are ``resilient_client``'s.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from typing import Any

import httpx

from resilience.config._kinds import KINDS, build
from resilience.config._values import ConfigError, as_mapping, duration, join
from resilience.http import ResilientTransport, resilient_async_client, resilient_client

__all__ = ["check_client", "client_breakers", "client_options"]

# option -> the kind of policy it takes
_POLICIES = {
    "retry": "retry",
    "breaker": "circuit_breaker",
    "bulkhead": "bulkhead",
    "hedge": "hedge",
}
_DURATIONS = frozenset({"timeout", "timeout_per_attempt", "deadline", "retry_after_max"})
# httpx.Client's options that a file can spell (not auth, hooks, mounts or a transport)
_HTTPX = frozenset(
    {
        "base_url",
        "headers",
        "params",
        "cookies",
        "timeout",
        "follow_redirects",
        "max_redirects",
        "verify",
        "trust_env",
        "http1",
        "http2",
        "proxy",
        "limits",
        "default_encoding",
    }
)
_CODE_ONLY = frozenset({"clock", "tracer_provider", "meter_provider", "inner"})


def _transport_options() -> frozenset[str]:
    names = inspect.signature(ResilientTransport).parameters
    return frozenset(names) - _CODE_ONLY - {"timeout"} | {"timeout_per_attempt"}


def client_options(resolver: Any, name: str) -> dict[str, Any]:
    """``resilient_client``'s keyword arguments for ``clients.<name>``, every value checked."""
    path = join("clients", name)
    table = as_mapping(resolver._tables["clients"][name], path, resolver.origins)
    known = _transport_options() | _HTTPX
    arguments: dict[str, Any] = {}
    for option, raw in table.items():
        where = join(path, option)
        if option not in known:
            close = difflib.get_close_matches(option, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(where, f"unknown client option{hint}", resolver.origins)
        if option in _POLICIES:
            arguments[option] = _policy(resolver, _POLICIES[option], raw, where)
        elif option in _DURATIONS:
            arguments[option] = duration(raw, where, resolver.origins)
        elif option == "limits":
            limits = as_mapping(raw, where, resolver.origins)
            try:
                arguments[option] = httpx.Limits(**limits)
            except TypeError as exc:
                raise ConfigError(where, str(exc), resolver.origins) from None
        else:
            arguments[option] = raw
    if resolver.clock is not None:
        arguments["clock"] = resolver.clock
    return arguments


def _policy(resolver: Any, kind: str, raw: object, path: str) -> Any:
    if raw is False or raw is None:
        return None
    if isinstance(raw, str):
        return resolver.get(kind, raw)
    return build(KINDS[kind], raw, path, resolver, base=resolver._base(kind))


def _located(exc: Exception, path: str, table: Mapping[str, Any], origins: Any) -> ConfigError:
    option, _, rest = str(exc).partition(" ")
    option = "timeout_per_attempt" if option == "timeout" and "timeout" not in table else option
    if option in table and rest:
        return ConfigError(join(path, option), rest, origins)
    return ConfigError(path, str(exc), origins)


def build_client(resolver: Any, name: str, *, asynchronous: bool) -> Any:
    """An ``httpx.Client`` (or ``AsyncClient``) for ``clients.<name>``."""
    arguments = client_options(resolver, name)
    make = resilient_async_client if asynchronous else resilient_client
    try:
        return make(**arguments)
    except (TypeError, ValueError) as exc:
        table = resolver._tables["clients"][name]
        raise _located(exc, join("clients", name), table, resolver.origins) from None


def check_client(resolver: Any, name: str) -> None:
    """Build ``clients.<name>`` once and close it: what loading runs."""
    build_client(resolver, name, asynchronous=False).close()


def client_breakers(built: Mapping[tuple[str, str], tuple[Any, Any]]) -> dict[str, Any]:
    """The breaker of each built client's ``base_url`` origin, as ``"<client> <origin>"``."""
    found: dict[str, Any] = {}
    for (kind, name), (client, _) in built.items():
        if kind not in ("client", "async_client") or not str(client.base_url):
            continue
        transport = client._transport
        breaker = transport.breaker_for(client.base_url) if transport is not None else None
        if breaker is not None:
            origin = str(client.base_url.copy_with(path="/", query=None, fragment=None))
            found[f"{name} {origin.rstrip('/')}"] = breaker
    return found
