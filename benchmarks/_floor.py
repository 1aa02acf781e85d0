"""The least a transport can do for issue 3's target — a floor to read our ratio against.

Not a product and not used by the library: one frame per request that does, inlined, only what
the benchmarked configuration must do on its success path (per-origin state; count the first
attempt for the retry budget and the outcome for the breaker, each under a lock; publish the
deadline in a context variable; cap httpx's timeouts by the time left; send the time left in
``Request-Timeout-Ms`` and take it back; look at the status). No events, no configuration, no
retry loop, no hedging, no error paths. Whatever a real transport does, it cannot cost less.
"""

from __future__ import annotations

import threading
import time
from contextvars import ContextVar
from typing import Any

import httpx

_DEADLINE: ContextVar[float | None] = ContextVar("floor_deadline", default=None)
_KEY = b"Request-Timeout-Ms"
_LOWER = _KEY.lower()
_TIMEOUTS = ("connect", "read", "write", "pool")
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class _OriginState:
    __slots__ = ("edge", "failures", "first_attempts", "lock", "position", "ring", "slice")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ring = bytearray(100)  # the breaker's last 100 outcomes
        self.position = 0
        self.failures = 0
        self.first_attempts = [0] * 11  # the budget's per-second slices
        self.slice = 0
        self.edge = -1.0


class FloorTransport(httpx.BaseTransport):
    def __init__(self, deadline: float = 5.0) -> None:
        self._inner = httpx.HTTPTransport()
        self._deadline = deadline
        self._origins: dict[Any, _OriginState] = {}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        key = (url.raw_scheme, url.raw_host, url.port)
        state = self._origins.get(key)
        if state is None:
            state = self._origins[key] = _OriginState()
        now = time.monotonic()
        at = now + self._deadline
        outer = _DEADLINE.get()
        token = _DEADLINE.set(at) if outer is None or outer > at else None
        raw = request.headers._list
        try:
            with state.lock:  # the budget: one more first attempt in this second's slice
                if now >= state.edge:
                    state.slice = int(now) % 11
                    state.edge = int(now) + 1.0
                    state.first_attempts[state.slice] = 0
                state.first_attempts[state.slice] += 1
            if state.failures >= 50:
                raise RuntimeError("open")  # the breaker (never open in the benchmark)
            left = at - now
            raw.append((_KEY, _LOWER, b"%d" % int(left * 1000)))
            extensions = request.extensions
            current = extensions.get("timeout") or {}
            capped = {}
            for name in _TIMEOUTS:
                value = current.get(name)
                capped[name] = left if value is None or value > left else value
            extensions["timeout"] = capped
            response = self._inner.handle_request(request)
            failed = response.status_code >= 500
            with state.lock:  # the breaker: this outcome replaces the oldest of the last 100
                position = state.position
                state.failures += failed - (state.ring[position] & 1)
                state.ring[position] = 2 | failed
                state.position = position + 1 if position < 99 else 0
            if response.status_code in _RETRY_STATUSES:
                raise RuntimeError("the floor has no retry loop")
            return response
        finally:
            if token is not None:
                _DEADLINE.reset(token)
            if raw and raw[-1][0] is _KEY:
                del raw[-1]

    def close(self) -> None:
        self._inner.close()
