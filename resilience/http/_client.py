"""One-call constructors for an ``httpx.Client`` / ``AsyncClient`` whose every transport is
resilient.

httpx builds the client's transports itself from its options: the default one (``limits``,
``verify``, ``cert``, ``http1``, ``http2``, ``trust_env``...) and one per proxy or mount
(``proxy=``, ``mounts=``, and ``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``ALL_PROXY`` from the
environment). The factories let httpx build them all, then wrap each in a resilient transport,
so no request bypasses the policies.
"""

from __future__ import annotations

from typing import Any, TypeVar

import httpx

from resilience.http._options import _NAMES, TransportOptions
from resilience.http._transport import AsyncResilientTransport, ResilientTransport

__all__ = ["resilient_async_client", "resilient_client"]


def _split(options: dict[str, Any]) -> tuple[TransportOptions, dict[str, Any]]:
    transport = {name: value for name, value in options.items() if name in _NAMES}
    client = {name: value for name, value in options.items() if name not in _NAMES}
    given = client.get("transport")
    if isinstance(given, _OURS):
        raise TypeError(
            "transport is already a resilient transport: its policies would run twice per "
            "attempt; give the factory the transport it wraps, or give it to httpx directly"
        )
    # A mounted transport of ours is refused too, rather than passed through unwrapped: its
    # own options would then silently differ from the ones given to the factory.
    for pattern, mounted in (client.get("mounts") or {}).items():
        if isinstance(mounted, _OURS):
            raise TypeError(
                f"mounts[{pattern!r}] is already a resilient transport: its policies would run "
                "twice per attempt; mount the transport it wraps (the factory wraps every "
                "mount), or give the mounts to httpx directly"
            )
    return TransportOptions(**transport), client


_OURS = (ResilientTransport, AsyncResilientTransport)


def resilient_client(**options: Any) -> httpx.Client:
    """An ``httpx.Client`` every one of whose transports is a ``ResilientTransport``.

    The transport options (``TransportOptions``: ``retry``, ``breaker``, ``attempt_timeout``,
    ``deadline``, ``origins_honour_keys``, ...) configure the policies — without any, the
    standard pipeline; every other keyword argument goes to ``httpx.Client`` as is
    (``base_url``, ``timeout``, ``limits``, ``verify``, ``http2``, ``proxy``, ``mounts``,
    ``transport``, ``auth``, ``event_hooks``, ...). Each transport httpx builds from them —
    the default one, each mount and each proxy, from arguments or the environment — is wrapped,
    each with its own per-origin policies.
    """
    transport_options, client_options = _split(options)
    return _wrap_all(httpx.Client(**client_options), ResilientTransport, transport_options)


def resilient_async_client(**options: Any) -> httpx.AsyncClient:
    """The ``httpx.AsyncClient`` twin of ``resilient_client``."""
    transport_options, client_options = _split(options)
    return _wrap_all(
        httpx.AsyncClient(**client_options), AsyncResilientTransport, transport_options
    )


Client = TypeVar("Client", httpx.Client, httpx.AsyncClient)


def _wrap_all(client: Client, kind: Any, options: TransportOptions) -> Client:
    """Wrap every transport httpx built for ``client``: the default one and each mount (the
    proxies, from arguments or the environment, are mounts)."""
    client._transport = kind.with_options(client._transport, options)
    client._mounts = {
        pattern: None if mounted is None else kind.with_options(mounted, options)
        for pattern, mounted in client._mounts.items()
    }
    return client
