"""Who is calling, by network address: what ``RateLimitMiddleware`` partitions by by default.

The connection's peer address is the one client identity a server can trust without being
told more. Behind a reverse proxy, though, every request comes from the proxy, and all callers
would share one bucket. Then name the header the proxy writes (``client_header``, e.g.
``X-Forwarded-For``) and the proxies' addresses (``trusted_proxies``): the header is read
only on requests whose peer is one of them, since any client can send it. Each proxy appends
the address it saw, so the caller is the rightmost entry that is not a trusted proxy (entries
to its left were written by the client). An entry that is not an IP address makes the peer
count instead; the partition is always an address in canonical form, never raw header text.

IPv6 callers are grouped by network (``ipv6_prefix``, /64 by default): one host commonly
holds a whole /64, and a bucket per address would give it 2**64 of them. A request without
a peer address (a server on a Unix socket) is counted as ``"unknown"`` (with one warning):
such a server must say who calls with its own ``partition``.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import re
from collections.abc import Iterable
from typing import Final

__all__ = ["ClientAddress"]

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_TOKEN: Final = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP field name
_MAX_HOPS: Final = 32  # entries of the header examined, at most
_CACHED: Final = 4096  # (peer, header) pairs whose partition is remembered
UNKNOWN: Final = "unknown"
_log: Final = logging.getLogger("resilience")


def _parse(text: str) -> _Address | None:
    """An address as proxies write it: bare, ``[v6]``, ``[v6]:port`` or ``v4:port``."""
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class ClientAddress:
    """The partition of a request: its caller's address (see the module's docstring).

    ``trusted_proxies``: addresses or networks (``"10.0.0.0/8"``) of the reverse proxies in
    front of the server; ``client_header``: the header they write the caller's address in.
    Give both or neither. Checked at construction; ``of`` never raises.
    """

    __slots__ = ("_exact", "_networks", "_resolve", "_warned", "header", "ipv6_prefix")

    def __init__(
        self,
        *,
        trusted_proxies: Iterable[str] = (),
        client_header: str | None = None,
        ipv6_prefix: int = 64,
    ) -> None:
        if isinstance(trusted_proxies, str):
            raise TypeError(
                f"trusted_proxies must be a collection of addresses, got {trusted_proxies!r}"
            )
        networks: list[_Network] = []
        for entry in trusted_proxies:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except (TypeError, ValueError):
                raise ValueError(
                    f"trusted_proxies must hold IP addresses or networks, got {entry!r}"
                ) from None
        if client_header is not None and (
            not isinstance(client_header, str) or not _TOKEN.match(client_header)
        ):
            raise ValueError(f"client_header must be a header name, got {client_header!r}")
        if bool(networks) != (client_header is not None):
            raise ValueError(
                "client_header and trusted_proxies go together: the header is read only on "
                f"requests from the proxies (got client_header={client_header!r}, "
                f"trusted_proxies={[str(n) for n in networks]!r})"
            )
        if isinstance(ipv6_prefix, bool) or not isinstance(ipv6_prefix, int):
            raise TypeError(f"ipv6_prefix must be an int, got {ipv6_prefix!r}")
        if not 1 <= ipv6_prefix <= 128:
            raise ValueError(f"ipv6_prefix must be in [1, 128], got {ipv6_prefix!r}")
        self.header = client_header.lower() if client_header is not None else None
        self.ipv6_prefix = ipv6_prefix
        # single addresses compare as strings (the server's own canonical text), no parsing
        self._exact = frozenset(str(n.network_address) for n in networks if n.num_addresses == 1)
        self._networks = tuple(n for n in networks if n.num_addresses > 1)
        # Parsing addresses costs ~15 us a request; callers come back with the same text.
        self._resolve = functools.lru_cache(maxsize=_CACHED)(self._resolve_uncached)
        self._warned = False

    def of(self, peer: str | None, forwarded: str | None) -> str:
        """The partition of a request from ``peer`` (the server's text for it) whose
        ``client_header`` field lines, joined with ``","``, are ``forwarded``."""
        if not peer:
            if not self._warned:
                self._warned = True  # a race may log it twice: harmless
                _log.warning(
                    "resilience: RateLimitMiddleware got a request without a peer address (a "
                    "server on a Unix socket?); such requests share one bucket, %r: pass "
                    "partition= to tell their callers apart",
                    UNKNOWN,
                )
            return UNKNOWN
        if self.header is None or not forwarded:
            if ":" not in peer:  # IPv4 as servers write it: canonical already
                return peer
            forwarded = None
        result: str = self._resolve(peer, forwarded)
        return result

    def _resolve_uncached(self, peer: str, forwarded: str | None) -> str:
        if forwarded is not None and self._trusted_text(peer):
            client = self._from_header(forwarded)
            if client is not None:
                return self._partition(client)
        if ":" not in peer:
            return peer
        address = _parse(peer)
        return peer if address is None else self._partition(address)

    def _trusted_text(self, peer: str) -> bool:
        if peer in self._exact:
            return True
        if not self._networks:
            return False
        address = _parse(peer)
        return address is not None and self._trusted(address)

    def _trusted(self, address: _Address) -> bool:
        return str(address) in self._exact or any(address in n for n in self._networks)

    def _from_header(self, forwarded: str) -> _Address | None:
        entries = forwarded.split(",")[-_MAX_HOPS:]
        for entry in reversed(entries):
            address = _parse(entry)
            if address is None:
                return None  # malformed: trust nothing in it
            if not self._trusted(address):
                return address
        return _parse(entries[0])  # every hop a proxy of ours: the first one called

    def _partition(self, address: _Address) -> str:
        if isinstance(address, ipaddress.IPv6Address) and self.ipv6_prefix < 128:
            network = ipaddress.IPv6Network((address, self.ipv6_prefix), strict=False)
            return str(network)
        return str(address)
