"""The least a transport can do for the standard pipeline — a floor to read our cost against.

Not a product and not used by the library: one frame per request that does, inlined, only what
the standard pipeline (``ResilientTransport()`` with no options) must do on its success path:
per-origin state; save what the request carries and put it back after the call; publish the
30 s deadline in a context variable; count the first attempt in the retry budget's current
one-second slice and the outcome in the breaker's 3-second slice of its 30 s window, each under
a lock; cap httpx's timeouts at min(10 s, time left) and send that in ``Request-Timeout-Ms``;
look at the status. No events, no configuration, no retry loop, no hedging, no error paths.
Whatever a real transport doing that work does, it cannot cost less.
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
_RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
_DEADLINE_SECONDS = 30.0
_ATTEMPT_TIMEOUT = 10.0
_NOTHING = object()


class _Slices:
    """Counts in one-slice-at-a-time rings (the budget's and the breaker's windows)."""

    __slots__ = ("calls", "edge", "failures", "index", "ring", "width")

    def __init__(self, width: float, ring: int) -> None:
        self.width, self.ring = width, ring
        self.calls = [0] * ring
        self.failures = [0] * ring
        self.index = 0
        self.edge = -1.0

    def at(self, now: float) -> int:
        if now >= self.edge:
            current = int(now / self.width)
            self.index = index = current % self.ring
            self.calls[index] = self.failures[index] = 0
            self.edge = (current + 1) * self.width
        return self.index


class _OriginState:
    __slots__ = ("budget", "calls", "failures", "lock", "window")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.budget = _Slices(1.0, 11)  # 10 s in 1 s slices
        self.window = _Slices(3.0, 11)  # 30 s in 3 s slices
        self.calls = 0
        self.failures = 0


class FloorTransport(httpx.BaseTransport):
    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()
        self._origins: dict[Any, _OriginState] = {}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        key = (url.raw_scheme, url.raw_host, url.port)
        state = self._origins.get(key)
        if state is None:
            state = self._origins[key] = _OriginState()
        raw = request.headers._list
        saved = raw.copy()
        extensions = request.extensions
        saved_timeout = extensions.get("timeout", _NOTHING)
        now = time.monotonic()
        at = now + _DEADLINE_SECONDS
        outer = _DEADLINE.get()
        token = _DEADLINE.set(at) if outer is None or outer > at else None
        try:
            with state.lock:  # the budget: one more first attempt in this second's slice
                state.budget.calls[state.budget.at(now)] += 1
            if state.failures * 2 >= state.calls >= 20:
                raise RuntimeError("open")  # the breaker (never open in the benchmark)
            left = at - now
            limit = left if left < _ATTEMPT_TIMEOUT else _ATTEMPT_TIMEOUT
            raw.append((_KEY, _LOWER, b"%d" % int(limit * 1000)))
            current = saved_timeout if saved_timeout is not _NOTHING else {}
            capped = {}
            for name in _TIMEOUTS:
                value = current.get(name)  # type: ignore[attr-defined]
                capped[name] = limit if value is None or value > limit else value
            extensions["timeout"] = capped
            response = self._inner.handle_request(request)
            failed = response.status_code >= 500
            with state.lock:  # the breaker: this outcome in the current slice of its window
                index = state.window.at(time.monotonic())
                state.window.calls[index] += 1
                state.calls += 1
                if failed:
                    state.window.failures[index] += 1
                    state.failures += 1
            if response.status_code in _RETRY_STATUSES:
                raise RuntimeError("the floor has no retry loop")
            return response
        finally:
            if token is not None:
                _DEADLINE.reset(token)
            raw[:] = saved
            if saved_timeout is _NOTHING:
                extensions.pop("timeout", None)
            else:
                extensions["timeout"] = saved_timeout

    def close(self) -> None:
        self._inner.close()
