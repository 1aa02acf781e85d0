"""One-call constructors for an ``httpx.Client`` / ``AsyncClient`` with a resilient transport."""

from __future__ import annotations

from typing import Any

import httpx

from resilience.http._transport import AsyncResilientTransport, ResilientTransport

__all__ = ["resilient_async_client", "resilient_client"]

# The keyword arguments that configure the transport; everything else goes to the client.
_TRANSPORT_OPTIONS = frozenset(
    {
        "retry",
        "breaker",
        "bulkhead",
        "timeout_per_attempt",
        "deadline",
        "hedge",
        "idempotency_keys",
        "key_style",
        "derive_keys",
        "retry_after_max",
        "deadline_header",
        "clock",
        "tracing",
        "tracer_provider",
        "meter_provider",
    }
)


def _split(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    transport = {k: v for k, v in options.items() if k in _TRANSPORT_OPTIONS}
    client = {k: v for k, v in options.items() if k not in _TRANSPORT_OPTIONS}
    if "timeout_per_attempt" in transport:
        transport["timeout"] = transport.pop("timeout_per_attempt")
    return transport, client


def resilient_client(**options: Any) -> httpx.Client:
    """An ``httpx.Client`` whose transport is a ``ResilientTransport``.

    Transport options (``retry``, ``breaker``, ``bulkhead``, ``deadline``, ``hedge``,
    ``idempotency_keys``, ``key_style``, ``retry_after_max``, ``deadline_header``, ``clock``,
    ``tracing``, ``tracer_provider``, ``meter_provider``, and ``timeout_per_attempt`` for the
    transport's ``timeout``) configure the policies; the rest
    (``base_url``, ``headers``, ``timeout``, ``limits``, ...) go to ``httpx.Client``.
    """
    transport_options, client_options = _split(options)
    if "transport" in client_options:
        transport_options["inner"] = client_options.pop("transport")
    return httpx.Client(transport=ResilientTransport(**transport_options), **client_options)


def resilient_async_client(**options: Any) -> httpx.AsyncClient:
    """The ``httpx.AsyncClient`` twin of ``resilient_client``."""
    transport_options, client_options = _split(options)
    if "transport" in client_options:
        transport_options["inner"] = client_options.pop("transport")
    return httpx.AsyncClient(
        transport=AsyncResilientTransport(**transport_options), **client_options
    )
