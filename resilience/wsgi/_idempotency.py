"""WSGI ``IdempotencyMiddleware``: run each keyed POST/PATCH once, replay its retries."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any

from resilience._context import end_serving_key, serving_key
from resilience._idempotency import Idempotency, StoredResponse, Verdict, fingerprint
from resilience.wsgi._shared import StartResponse, WSGIApp, answer, read_body

__all__ = ["IdempotencyMiddleware"]


class IdempotencyMiddleware:
    """Run each keyed POST/PATCH once; answer its retries with the stored response.

    Same rules and options as ``resilience.asgi.IdempotencyMiddleware``. The response of a
    claimed request is buffered (to store it) before it is returned.
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        store: Any = None,
        methods: Iterable[str] = ("POST", "PATCH"),
        required: bool = False,
        ttl: float = 86_400.0,
        lease: float = 60.0,
        max_body: int = 1 << 20,
        key_scope: Callable[[Any], str] | None = None,
        name: str = "idempotency",
    ) -> None:
        self.app = app
        # Every keyword argument above, passed on as is (the signature stays explicit).
        self.rules = Idempotency(**{k: v for k, v in locals().items() if k not in ("self", "app")})
        if getattr(self.rules.store, "is_async", False) is True:
            raise TypeError(
                "store: the WSGI middleware needs a synchronous store "
                "(MemoryStore, or RedisStore over redis.Redis)"
            )

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        rules = self.rules
        method = environ["REQUEST_METHOD"]
        screened = rules.screen(method, environ.get("HTTP_IDEMPOTENCY_KEY"), environ)
        if isinstance(screened, Verdict):
            if screened.run:
                return self.app(environ, start_response)
            return answer(start_response, screened.response)
        body = read_body(environ, rules.max_body)
        if body is None:
            return answer(start_response, rules.too_large().response)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        store = rules.store
        claim = store.idempotency_claim(
            screened,
            fingerprint(method, path, environ.get("QUERY_STRING", ""), body),
            rules.lease,
        )
        verdict = rules.judge(screened, claim)
        if not verdict.run:
            return answer(start_response, verdict.response)
        return self._run(environ, start_response, screened, verdict.token)

    def _run(
        self, environ: dict[str, Any], start_response: StartResponse, key: str, token: str | None
    ) -> Iterable[bytes]:
        rules, store = self.rules, self.rules.store
        started: list[tuple[str, list[tuple[str, str]]]] = []

        def keep(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            started[:] = [(status, headers)]
            return start_response(status, headers, exc_info)

        serving = serving_key(key)  # outgoing resilient calls derive their keys from it
        try:
            result = self.app(environ, keep)
            try:
                body = b"".join(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except BaseException:
            if token is not None:
                store.idempotency_release(key, token)
            raise
        finally:
            end_serving_key(serving)
        if token is not None:
            status = int(started[0][0].split(" ", 1)[0]) if started else 0
            if started and rules.keeps(status):
                headers = [
                    (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in started[0][1]
                ]
                stored = StoredResponse(status, headers, body)
                store.idempotency_complete(key, token, stored.encode(), rules.ttl)
            else:
                store.idempotency_release(key, token)
        return [body]
