"""Everything that touches httpx's internals: header writes, what a call leaves behind, bodies.

httpx re-sends the caller's ``Request`` object for the second leg of an auth flow (Digest),
copies its headers into the request that follows a redirect, and its cookie jar reads them
after the call; so whatever the transport writes on a request for its attempts (the
Idempotency-Key, the time-left header, ``traceparent``, capped timeouts) is taken back when the
call ends (``Saved``): every follow-up exchange gets its own.

The fast paths write httpx's header list (``Headers._list``, entries of (raw name, lower-case
name, value) bytes) directly, because ``Headers.__setitem__`` re-encodes and rescans on every
call; when a ``Headers`` has another shape they fall back to the public API.
"""

from __future__ import annotations

from typing import Any

import httpx

from resilience._context import current_key_scope
from resilience.http._classify import has_key
from resilience.http._keys import IDEMPOTENCY_KEY, KeyStyle, new_idempotency_key, styled

__all__ = [
    "TIMEOUT_KEYS",
    "Saved",
    "add_idempotency_key",
    "cap_timeouts",
    "hedgeable",
    "replayable",
    "restore",
    "save",
    "set_header",
]

TIMEOUT_KEYS = ("connect", "read", "write", "pool")
_NOTHING: Any = object()  # "the request had no timeout extension"

# What a call found on the request: its header entries and its timeout extension.
Saved = tuple[Any, Any]


def save(request: httpx.Request) -> Saved:
    """What ``restore`` puts back after the call: the header entries and the timeouts."""
    raw = getattr(request.headers, "_list", None)
    headers = raw.copy() if isinstance(raw, list) else list(request.headers.multi_items())
    return headers, request.extensions.get("timeout", _NOTHING)


def restore(request: httpx.Request, saved: Saved) -> None:
    """Put the request's headers and timeouts back as ``save`` found them."""
    entries, timeout = saved
    headers = request.headers
    raw = getattr(headers, "_list", None)
    if isinstance(raw, list):
        raw[:] = entries
    else:  # another shape: through the public API (repeated names come back joined)
        for name in list(headers.keys()):
            del headers[name]
        for name, value in entries:
            headers[name] = value
    extensions = request.extensions
    if timeout is _NOTHING:
        extensions.pop("timeout", None)
    else:
        extensions["timeout"] = timeout


def set_header(headers: httpx.Headers, key: bytes, value: str | bytes) -> None:
    """Set one ASCII header, replacing any earlier value (``Headers.__setitem__`` costs
    ~2.5 µs: it re-encodes and rescans)."""
    raw = getattr(headers, "_list", None)
    encoded = value if isinstance(value, bytes) else value.encode("ascii")
    if not isinstance(raw, list):
        headers[key.decode("ascii")] = encoded.decode("ascii")
        return
    lower = key.lower()
    entry = (key, lower, encoded)
    for index, item in enumerate(raw):
        if item[1] == lower:
            raw[index] = entry
            return
    raw.append(entry)


def cap_timeouts(request: httpx.Request, limit: float) -> float:
    """Cap each of this attempt's httpx timeouts (connect, read, write, pool) at ``limit``;
    return the capped read timeout: how long the server has to answer this attempt."""
    extensions = request.extensions
    current = extensions.get("timeout")
    if not current:
        extensions["timeout"] = dict.fromkeys(TIMEOUT_KEYS, limit)
        return limit
    capped: dict[str, float] = {}
    for name in TIMEOUT_KEYS:
        value = current.get(name)
        capped[name] = limit if value is None or value > limit else value
    extensions["timeout"] = capped
    return capped["read"]


def replayable(request: httpx.Request) -> bool:
    """Whether the body can be sent again unchanged: bytes, or multipart whose files can all
    seek back (httpx rewinds them; a pipe or a socket would send an empty part)."""
    stream = request.stream
    if isinstance(stream, httpx.ByteStream):
        return True
    if not isinstance(stream, httpx._multipart.MultipartStream):
        return False  # an iterator or a file object: read once
    for field in stream.fields:
        file = getattr(field, "file", None)
        if file is None or isinstance(file, (str, bytes)):
            continue  # a plain form value, or a file given as bytes
        try:
            if not file.seekable():
                return False
        except (AttributeError, ValueError):  # no seekable() (a generator), or closed
            return False
    return True


def hedgeable(request: httpx.Request) -> bool:
    """Whether copies of the request can be in flight at once, each sending the whole body:
    bytes (or no body). A file or multipart body is one object that concurrent copies would
    read in turns (each sends part of it, or an empty part when it cannot seek); an iterator
    is read once."""
    return isinstance(request.stream, httpx.ByteStream)


_IDEMPOTENCY_KEY = IDEMPOTENCY_KEY.encode("ascii")


def add_idempotency_key(request: httpx.Request, style: KeyStyle, derive: bool) -> None:
    """Give an unsafe request its key for this call; never replace the caller's. Inside a
    request served under an Idempotency-Key (``resilience.asgi`` / ``wsgi``) and with
    ``derive``, derive it from that key, so a re-run of the handler sends the same keys
    downstream."""
    if has_key(request):
        return
    serving = current_key_scope() if derive else None
    if serving is None:
        key = new_idempotency_key(style)
    else:
        key = styled(serving.derive(request.method, str(request.url)), style)
    set_header(request.headers, _IDEMPOTENCY_KEY, key)
