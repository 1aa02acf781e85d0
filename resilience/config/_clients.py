"""``clients.<name>``: the transport's options and an httpx client, from a table.

The transport options are ``TransportOptions``' fields: left out, an option keeps the standard
pipeline's value. ``retry``, ``breaker``, ``bulkhead`` and ``hedge`` are a policy's name in the
registry (``"payments"``), an inline table, or ``false`` to switch that part off; durations may
be strings; ``retry_errors`` are exception class names. Every other key goes to httpx
(``base_url``, ``headers``, ``timeout``, ``limits`` as a table, ...).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from typing import Any

import httpx

from resilience.config._kinds import KINDS, build
from resilience.config._values import ConfigError, as_mapping, duration, exception_classes, join
from resilience.http import TransportOptions, resilient_async_client, resilient_client

__all__ = ["build_client", "check_client", "client_breakers", "transport_options"]

# option -> the kind of policy it takes
_POLICIES = {
    "retry": "retry",
    "breaker": "circuit_breaker",
    "bulkhead": "bulkhead",
    "hedge": "hedge",
}
_DURATIONS = frozenset({"attempt_timeout", "deadline", "retry_after_max"})
# The transport options a file can hold (plain values); the others take functions or objects
# (policy_key, the clock, providers, a dead-letter queue...) and are given in code.
_PLAIN = frozenset(
    {
        "idempotency_keys",
        "origins_honour_keys",
        "key_style",
        "derive_keys",
        "retry_statuses",
        "breaker_statuses",
        "retry_errors",
        "deadline_header",
        "tracing",
    }
)
_ALL = frozenset(field.name for field in dataclasses.fields(TransportOptions))
_TRANSPORT = (_PLAIN | _DURATIONS | set(_POLICIES)) & _ALL
_CODE_ONLY = _ALL - _TRANSPORT
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


def _split(resolver: Any, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(transport options, httpx options) of ``clients.<name>``, every value converted."""
    path = join("clients", name)
    table = as_mapping(resolver._tables["clients"][name], path, resolver.origins)
    origins = resolver.origins
    transport: dict[str, Any] = {}
    client: dict[str, Any] = {}
    for option, raw in table.items():
        where = join(path, option)
        if option in _CODE_ONLY:
            problem = (
                f"cannot come from configuration: pass it in code, client({name!r}, {option}=...)"
            )
            raise ConfigError(where, problem, origins)
        if option in _POLICIES:
            transport[option] = _policy(resolver, _POLICIES[option], raw, where)
        elif option in _DURATIONS:
            transport[option] = duration(raw, where, origins)
        elif option == "retry_errors":
            found = exception_classes(raw, where, origins)
            transport[option] = found if isinstance(found, tuple) else (found,)
        elif option in _TRANSPORT:
            transport[option] = raw
        elif option == "timeout":
            client[option] = duration(raw, where, origins)
        elif option == "limits":
            try:
                client[option] = httpx.Limits(**as_mapping(raw, where, origins))
            except TypeError as exc:
                raise ConfigError(where, str(exc), origins) from None
        elif option in _HTTPX:
            client[option] = raw
        else:
            close = difflib.get_close_matches(option, _TRANSPORT | _HTTPX, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(where, f"unknown client option{hint}", origins)
    if resolver.clock is not None:
        transport["clock"] = resolver.clock
    return transport, client


def _policy(resolver: Any, kind: str, raw: object, path: str) -> Any:
    if raw is False:
        return None  # this part of the standard pipeline switched off
    if isinstance(raw, str):
        return resolver.get(kind, raw)
    return build(KINDS[kind], raw, path, resolver, base=resolver._base(kind))


def _located(exc: Exception, path: str, table: Mapping[str, Any], origins: Any) -> ConfigError:
    option, _, rest = str(exc).partition(" ")
    if option in table and rest:
        return ConfigError(join(path, option), rest, origins)
    return ConfigError(path, str(exc), origins)


def _code(code: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(code) - _CODE_ONLY
    if unknown:
        raise TypeError(
            f"options {sorted(unknown)} belong in the configuration; from code pass only "
            f"{', '.join(sorted(_CODE_ONLY))}"
        )
    return dict(code)


def transport_options(resolver: Any, name: str, code: Mapping[str, Any]) -> TransportOptions:
    """The ``TransportOptions`` of ``clients.<name>`` (httpx's own options left out), with
    ``code`` (the options a file cannot hold)."""
    transport, _ = _split(resolver, name)
    given = _code(code)
    try:
        return TransportOptions(**transport, **given)
    except (TypeError, ValueError) as exc:
        table = resolver._tables["clients"][name]
        raise _located(exc, join("clients", name), table, resolver.origins) from None


def build_client(resolver: Any, name: str, code: Mapping[str, Any], *, asynchronous: bool) -> Any:
    """An ``httpx.Client`` (or ``AsyncClient``) for ``clients.<name>``, with ``code``."""
    transport, client = _split(resolver, name)
    given = _code(code)
    make = resilient_async_client if asynchronous else resilient_client
    try:
        return make(**transport, **given, **client)
    except (TypeError, ValueError) as exc:
        table = resolver._tables["clients"][name]
        raise _located(exc, join("clients", name), table, resolver.origins) from None


def check_client(resolver: Any, name: str) -> None:
    """Build ``clients.<name>`` once and close it: what loading runs."""
    build_client(resolver, name, {}, asynchronous=False).close()


def client_breakers(built: Mapping[tuple[str, str], tuple[Any, Any]]) -> dict[str, Any]:
    """The breaker of each built client's ``base_url`` origin, as ``"<client> <origin>"``
    (present once the client has sent a request there)."""
    found: dict[str, Any] = {}
    for (kind, name), (client, _) in built.items():
        if kind not in ("client", "async_client") or not str(client.base_url):
            continue
        breaker_for = getattr(client._transport, "breaker_for", None)
        breaker = breaker_for(client.base_url) if breaker_for is not None else None
        if breaker is not None:
            origin = str(client.base_url.copy_with(path="/", query=None, fragment=None))
            found[f"{name} {origin.rstrip('/')}"] = breaker
    return found
