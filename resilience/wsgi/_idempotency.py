"""WSGI ``IdempotencyMiddleware``: run each keyed POST/PATCH once, replay its retries."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from resilience._context import end_serving_key, serving_key
from resilience._idempotency.policy import Idempotency, Verdict
from resilience._idempotency.rules import StoredResponse, fingerprint, storable_headers
from resilience.stores._protocols import IdempotencyStore
from resilience.wsgi._keeper import Held, Keeper
from resilience.wsgi._shared import StartResponse, WSGIApp, answer, close, whole

__all__ = ["IdempotencyMiddleware"]


class IdempotencyMiddleware:
    """Run each keyed POST/PATCH once; answer its retries with the stored response.

    Same rules and options as ``resilience.asgi.IdempotencyMiddleware``. The request body is
    read whole first: ``CONTENT_LENGTH`` bytes (fewer: 400, nothing runs), or to the end when
    the server de-chunks and says so (``wsgi.input_terminated``: gunicorn, mod_wsgi), else a
    chunked keyed request gets 411. The response is buffered (to store it) before it is
    returned, up to ``max_response`` bytes; a larger one, or one without a ``Content-Length``
    that is not whole (a list or tuple, or a Django ``HttpResponse``: a generator, a
    ``StreamingHttpResponse``), streams through and is not stored (its retries get 410).
    What the app writes through ``start_response``'s legacy ``write()`` callable is part of
    the response kept (held back with the rest, in order); past ``max_response`` it is
    relayed at once and the response is not stored.
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        store: IdempotencyStore | None = None,
        methods: Iterable[str] = ("POST", "PATCH"),
        required: bool = False,
        ttl: float = 86_400.0,
        lease: float = 60.0,
        max_body: int = 1 << 20,
        max_response: int = 1 << 20,
        key_scope: Callable[[Any], str | None] | None = None,
        caller_header: str | None = "Authorization",
        caller_cookie: str | None = None,
        shared_keys: bool = False,
        fail_open: bool = False,
        name: str | None = None,
    ) -> None:
        self.app = app
        # Every keyword argument above, passed on as is (the signature stays explicit).
        self.rules = Idempotency(**{k: v for k, v in locals().items() if k not in ("self", "app")})
        if not isinstance(self.rules.store, IdempotencyStore) or (
            getattr(self.rules.store, "is_async", False) is True
        ):
            raise TypeError(
                "store: the WSGI middleware needs a synchronous store "
                "(MemoryStore, or RedisStore over redis.Redis)"
            )
        self._methods = self.rules.methods
        header = self.rules.caller_header
        self._credential = "HTTP_" + header.upper().replace("-", "_") if header else None
        self._keeper = Keeper(self.rules)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        if method not in self._methods:
            return self.app(environ, start_response)
        rules = self.rules
        raw = environ.get("HTTP_IDEMPOTENCY_KEY")  # two field lines arrive joined: 400
        credential = environ.get(self._credential) if self._credential else None
        screened = rules.screen(
            () if raw is None else (raw,), environ, credential, environ.get("HTTP_COOKIE")
        )
        if isinstance(screened, Verdict):
            if screened.run:
                return self.app(environ, start_response)
            return answer(start_response, rules.answered(screened, method, _path(environ)))
        body = _read_body(environ, rules.max_body)
        if not isinstance(body, bytes):
            refusal = {413: rules.too_large, 411: rules.length_required}.get(body, rules.incomplete)
            return answer(start_response, rules.answered(refusal(), method, _path(environ)))
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        payload = fingerprint(method, _target(environ), environ.get("QUERY_STRING", ""), body)
        verdict = rules.judge(rules.store.idempotency_claim(screened, payload, rules.lease))
        if not verdict.run:
            return answer(start_response, rules.answered(verdict, method, _path(environ)))
        serving = serving_key(screened)  # outgoing resilient calls derive their keys from it
        try:
            if verdict.token is None:  # the store is down and fail_open said run anyway
                return self.app(environ, start_response)
            held = self._keeper.hold(screened, payload, verdict.token)
            return _Run(self, held, start_response).run(environ)
        finally:
            end_serving_key(serving)


class _Run:
    """One claimed request: buffer its response (up to ``max_response``), store it, or let
    it stream through; release the claim when it says "not processed" or fails."""

    __slots__ = (
        "app",
        "chunks",
        "headers",
        "held",
        "keeper",
        "relay",
        "rules",
        "server_write",
        "size",
        "start_response",
        "started",
        "status",
    )

    def __init__(
        self, middleware: IdempotencyMiddleware, held: Held, start_response: StartResponse
    ) -> None:
        self.app, self.rules = middleware.app, middleware.rules
        self.keeper, self.held = middleware._keeper, held
        self.start_response = start_response
        self.started = time.monotonic()
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.chunks: list[bytes] = []  # the body so far, in order: written, then iterated
        self.size = 0
        self.server_write: Callable[[bytes], object] | None = None
        self.relay: Callable[[bytes], object] | None = None  # server_write, once relaying

    def keep(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        self.status = int(status.split(" ", 1)[0]) if status[:3].isdigit() else 0
        self.headers = headers
        server_write = self.server_write = self.start_response(status, headers, exc_info)
        if exc_info is not None and self.relay is None:  # a new response: drop the old body
            self.chunks, self.size = [], 0

        def write(data: bytes) -> None:
            """The legacy ``write()`` callable (PEP 3333): what it writes is part of the
            response kept, up to ``max_response``; past it, all of it goes to the server's
            ``write()`` at once, and the response is relayed and not kept."""
            if self.relay is not None:
                self.relay(data)
                return
            self.size += len(data)
            self.chunks.append(data)
            if self.size > self.rules.max_response:
                self.relay = server_write
                for chunk in self.chunks:
                    server_write(chunk)
                self.chunks = []

        return write

    def run(self, environ: dict[str, Any]) -> Iterable[bytes]:
        rules = self.rules
        try:
            result = self.app(environ, self.keep)
            iterator = iter(result)
            if self.relay is not None:  # written past max_response: relayed already
                return _PassThrough(self, result, iterator, [])
            sized = whole(result)
            for chunk in iterator:
                self.size += len(chunk)
                self.chunks.append(chunk)
                if self.size > rules.max_response or not (sized or self._length() is not None):
                    self.relay = self.server_write  # a write() from here on goes straight out
                    return _PassThrough(self, result, iterator, self.chunks)
            close(result)
        except BaseException:
            self.finish(None, ended=False)
            raise
        self.finish(b"".join(self.chunks), ended=True)
        return self.chunks

    def _length(self) -> int | None:
        for name, value in self.headers:
            if name.lower() == "content-length":
                return int(value) if value.isdigit() else None
        return None

    def finish(self, body: bytes | None, *, ended: bool) -> None:
        """Store the response (``body``; ``None`` with ``ended``: it was not kept) or, when it
        did not end or says "not processed", release the claim."""
        rules, held, store = self.rules, self.held, self.rules.store
        self.keeper.drop(held)
        rules.took(time.monotonic() - self.started)
        if not ended or not rules.keeps(self.status):
            store.idempotency_release(held.record, held.token)
            return
        if body is None:
            data = rules.unkept(self.status)
        else:
            raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers]
            data = StoredResponse(self.status, storable_headers(raw), body).encode()
        outcome = store.idempotency_complete(
            held.record, held.fingerprint, held.token, data, rules.ttl
        )
        if outcome == "lost" and not held.lost:
            rules.claim_lost("complete")
        elif outcome == "unavailable":
            self.keeper.complete_later(held, data)


class _PassThrough:
    """The rest of a response too large (or too streamed) to keep: relayed as it comes; the
    claim is completed (as "not kept") when the server closes it, unless the app's iterable
    failed (then it is released: not done). A client that left halfway does not make the
    request undone: the handler ran, so its retry gets 410 rather than a second run."""

    __slots__ = ("_failed", "_iterator", "_result", "_run", "_sent")

    def __init__(
        self, run: _Run, result: Iterable[bytes], iterator: Iterator[bytes], sent: list[bytes]
    ) -> None:
        self._run, self._result, self._iterator = run, result, iterator
        self._sent: list[bytes] | None = sent
        self._failed = False

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._sent:
            return self._sent.pop(0)
        self._sent = None
        try:
            return next(self._iterator)
        except StopIteration:
            raise
        except BaseException:
            self._failed = True
            raise

    def close(self) -> None:
        try:
            close(self._result)
        finally:
            self._run.finish(None, ended=not self._failed)


def _path(environ: dict[str, Any]) -> str:
    return environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")  # type: ignore[no-any-return]


def _target(environ: dict[str, Any]) -> str:
    """The path as the client sent it, for the fingerprint: the raw request target when the
    server gives it (gunicorn's ``RAW_URI``, Apache's and uWSGI's ``REQUEST_URI``) up to its
    ``?``, since ``PATH_INFO`` is decoded (``%2F`` and ``/`` alike), else the decoded path."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    return raw.partition("?")[0] if isinstance(raw, str) and raw else _path(environ)


def _read_body(environ: dict[str, Any], limit: int) -> bytes | int:
    """The whole request body, or the status to refuse it with: 413 past ``limit`` bytes, 411
    when it is chunked and the server cannot say where it ends, 400 when it is incomplete."""
    stream = environ["wsgi.input"]
    raw = environ.get("CONTENT_LENGTH")
    try:
        if raw:
            if not raw.strip().isdigit():
                return 400
            length = int(raw)
            if length > limit:
                return 413
            body = _read(stream, length)
            return body if len(body) == length else 400
        if environ.get("wsgi.input_terminated"):  # de-chunked by the server: read to the end
            body = _read(stream, limit + 1)
            return body if len(body) <= limit else 413
    except Exception:  # the connection broke halfway (servers raise their own errors)
        return 400
    return 411 if environ.get("HTTP_TRANSFER_ENCODING") else b""


def _read(stream: Any, size: int) -> bytes:
    """Up to ``size`` bytes: fewer only at the end of the input (``read`` may return less)."""
    parts: list[bytes] = []
    left = size
    while left > 0:
        part = stream.read(min(left, 1 << 16))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)
