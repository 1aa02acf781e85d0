"""``clients.<name>``: the transport's options and an httpx client, from a table.

The transport options are ``TransportOptions``' fields: left out, an option keeps the standard
pipeline's value. ``retry``, ``breaker``, ``bulkhead`` and ``hedge`` are a policy's name in the
registry (``"payments"``), an inline table, or ``false`` to switch that part off; durations may
be strings; ``retry_errors`` are exception class names. Every other key goes to httpx
(``base_url``, ``headers``, ``timeout``, ``limits`` as a table, ...), checked here first so that
a bad value fails at its key (``clients.api.base_url: must be a URL string, got 5``), not with
httpx's words at the client's.
"""

from __future__ import annotations

import codecs
import dataclasses
import difflib
import math
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from resilience.config._kinds import KINDS, build
from resilience.config._values import (
    ConfigError,
    Origins,
    as_mapping,
    duration,
    exception_classes,
    join,
)
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
        elif option in _HTTPX:
            client[option] = _httpx(option, raw, where, origins)
        else:
            close = difflib.get_close_matches(option, _TRANSPORT | _HTTPX, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(where, f"unknown client option{hint}", origins)
    if resolver.clock is not None:
        transport["clock"] = resolver.clock
    return transport, client


_BOOLEANS = frozenset({"follow_redirects", "trust_env", "http1", "http2"})
_LIMITS = ("max_connections", "max_keepalive_connections", "keepalive_expiry")


def _httpx(option: str, raw: object, where: str, origins: Origins) -> object:
    """httpx's ``option`` as a file spells it, checked and converted (a duration to seconds, a
    CA bundle's path to an ``ssl.SSLContext``, limits to ``httpx.Limits``)."""
    if option in ("base_url", "proxy"):
        return _url(option, raw, where, origins)
    if option in ("headers", "cookies"):
        table = as_mapping(raw, where, origins)
        for key, value in table.items():
            if not isinstance(value, str):
                raise ConfigError(join(where, key), f"must be a string, got {value!r}", origins)
        return table
    if option == "params":
        table = as_mapping(raw, where, origins)
        for key, value in table.items():
            if not all(isinstance(v, (str, int, float)) for v in _listed(value)):
                problem = f"must be a string, a number, true/false or a list of them, got {value!r}"
                raise ConfigError(join(where, key), problem, origins)
        return table
    if option in _BOOLEANS:
        if not isinstance(raw, bool):
            raise ConfigError(where, f"must be true or false, got {raw!r}", origins)
        return raw
    if option == "max_redirects":
        return _count(raw, where, origins)
    if option == "verify":
        return _verify(raw, where, origins)
    if option == "default_encoding":
        try:
            codecs.lookup(raw if isinstance(raw, str) else "")
        except LookupError:
            problem = f"must be an encoding name such as 'utf-8', got {raw!r}"
            raise ConfigError(where, problem, origins) from None
        return raw
    if option == "timeout":
        return _seconds(raw, where, origins, allow_zero=False)
    assert option == "limits", option
    table = as_mapping(raw, where, origins)
    limits: dict[str, Any] = {}
    for key, value in table.items():
        at = join(where, key)
        if key not in _LIMITS:
            close = difflib.get_close_matches(key, _LIMITS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problem = f"unknown option{hint}; limits take {', '.join(_LIMITS)}"
            raise ConfigError(at, problem, origins)
        if key == "keepalive_expiry":
            limits[key] = _seconds(value, at, origins, allow_zero=True)
        else:
            limits[key] = _count(value, at, origins)
    return httpx.Limits(**limits)


def _listed(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else [value]


def _url(option: str, raw: object, where: str, origins: Origins) -> object:
    """An absolute http(s) URL (a proxy may also be socks5)."""
    if not isinstance(raw, str):
        raise ConfigError(where, f"must be a URL string, got {raw!r}", origins)
    try:
        url = httpx.URL(raw)
    except httpx.InvalidURL as exc:
        raise ConfigError(where, f"not a valid URL ({exc}): {raw!r}", origins) from None
    schemes = ("http", "https", "socks5", "socks5h") if option == "proxy" else ("http", "https")
    if url.scheme not in schemes or not url.host:
        problem = f"must be an absolute {', '.join(schemes)} URL, got {raw!r}"
        raise ConfigError(where, problem, origins)
    return raw


def _count(raw: object, where: str, origins: Origins) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise ConfigError(where, f"must be an integer >= 0, got {raw!r}", origins)
    return raw


def _seconds(raw: object, where: str, origins: Origins, *, allow_zero: bool) -> float:
    seconds = duration(raw, where, origins)
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or not math.isfinite(seconds)
        or seconds < 0
        or (seconds == 0 and not allow_zero)
    ):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(where, f"must be {bound} seconds, got {raw!r}", origins)
    return float(seconds)


def _verify(raw: object, where: str, origins: Origins) -> object:
    """``true``, ``false``, or the path of a CA bundle (a file) or of a directory of them,
    loaded now into an ``ssl.SSLContext`` (httpx's way; a missing file fails at load)."""
    if isinstance(raw, bool):
        return raw
    if not isinstance(raw, str):
        problem = f"must be true, false or the path of a CA bundle, got {raw!r}"
        raise ConfigError(where, problem, origins)
    try:
        if Path(raw).is_dir():
            return ssl.create_default_context(capath=raw)
        return ssl.create_default_context(cafile=raw)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(where, f"cannot load a CA bundle from {raw!r}: {exc}", origins) from None


def _policy(resolver: Any, kind: str, raw: object, path: str) -> Any:
    if raw is False:
        return None  # this part of the standard pipeline switched off
    if isinstance(raw, str):
        return resolver._named(kind, raw, path)
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
