"""Server-side idempotency and deadlines: the sans-IO rules, the memory store, and the ASGI and
WSGI middleware serving real requests on 127.0.0.1 (uvicorn; threaded wsgiref)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from resilience import (
    Backoff,
    IdempotencyConflict,
    IdempotencyMismatch,
    IdempotentReplayed,
    RateLimiter,
    Retry,
    remaining,
)
from resilience import asgi as resilience_asgi
from resilience import wsgi as resilience_wsgi
from resilience._context import parse_deadline
from resilience._idempotency.policy import Idempotency
from resilience._idempotency.rules import StoredResponse, fingerprint, parse_key
from resilience.http import ResilientTransport
from resilience.stores import Claim, MemoryStore
from resilience.testing import EventRecorder, FakeClock, serve_asgi, serve_wsgi

KEY = '"8e03978e-40d5-43e8-bc93-6894a57f9324"'


# -- the rules, sans IO -------------------------------------------------------------------------


def test_keys_are_sf_strings_or_tokens() -> None:
    """The draft's quoted sf-string and Stripe's bare token are both accepted; the rest is not."""
    assert parse_key(KEY) == "8e03978e-40d5-43e8-bc93-6894a57f9324"
    assert parse_key("abc-123") == "abc-123"
    assert parse_key(r'"a\"b"') == 'a"b'
    assert parse_key(None) is None
    for bad in ['""', '"unterminated', "two words", "x" * 256, "", "caf\u00e9"]:
        with pytest.raises(ValueError, match="Idempotency-Key"):
            parse_key(bad)


def test_fingerprint_covers_method_target_and_body() -> None:
    """Changing any part of the payload changes the fingerprint."""
    base = fingerprint("POST", "/charges", "", b'{"cents": 100}')
    assert base == fingerprint("POST", "/charges", "", b'{"cents": 100}')
    others = [
        fingerprint("PATCH", "/charges", "", b'{"cents": 100}'),
        fingerprint("POST", "/refunds", "", b'{"cents": 100}'),
        fingerprint("POST", "/charges", "x=1", b'{"cents": 100}'),
        fingerprint("POST", "/charges", "", b'{"cents": 101}'),
        fingerprint("POST", "/charge", "s", b'{"cents": 100}'),  # no ambiguity across fields
    ]
    assert base not in others and len(set(others)) == len(others)


def test_stored_responses_round_trip() -> None:
    """Status, raw headers (repeated ones too) and body survive encoding byte for byte."""
    stored = StoredResponse(201, [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=\xe9")], b"\n\x00x")
    assert StoredResponse.decode(stored.encode()) == stored


def test_memory_store_claims_replays_and_expires(clock: FakeClock) -> None:
    """Claim, conflict while running, replay when done, mismatch on another payload, and the
    record forgotten after its ttl."""
    store = MemoryStore(clock=clock)
    first = store.idempotency_claim("k", "fp", lease=30.0)
    assert first.outcome == "claimed" and first.token
    assert store.idempotency_claim("k", "fp", 30.0) == Claim("in_progress")
    assert store.idempotency_claim("k", "other", 30.0) == Claim("mismatch")
    assert store.idempotency_complete("k", "fp", first.token, b"stored", ttl=60.0) == "stored"
    assert store.idempotency_claim("k", "fp", 30.0) == Claim("replay", response=b"stored")
    assert store.idempotency_claim("k", "other", 30.0) == Claim("mismatch")
    clock.advance(60.0)
    assert store.idempotency_claim("k", "other", 30.0).outcome == "claimed"


def test_a_claim_whose_owner_died_expires(clock: FakeClock) -> None:
    """After ``lease`` seconds another request takes the key; the dead owner cannot complete."""
    store = MemoryStore(clock=clock)
    dead = store.idempotency_claim("k", "fp", lease=5.0)
    clock.advance(4.9)
    assert store.idempotency_claim("k", "fp", 5.0).outcome == "in_progress"
    clock.advance(0.1)
    taken = store.idempotency_claim("k", "fp", 5.0)
    assert taken.outcome == "claimed" and taken.token != dead.token
    assert dead.token is not None
    assert store.idempotency_complete("k", "fp", dead.token, b"x", 60.0) == "lost"
    assert taken.token is not None
    assert store.idempotency_complete("k", "fp", taken.token, b"y", 60.0) == "stored"


def test_released_claims_run_again(clock: FakeClock) -> None:
    """Releasing (a failed handler) frees the key; releasing with a stale token does nothing."""
    store = MemoryStore(clock=clock)
    claim = store.idempotency_claim("k", "fp", 5.0)
    assert claim.token is not None
    store.idempotency_release("k", "not-the-owner")
    assert store.idempotency_claim("k", "fp", 5.0).outcome == "in_progress"
    store.idempotency_release("k", claim.token)
    assert store.idempotency_claim("k", "fp", 5.0).outcome == "claimed"


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"ttl": 0}, "ttl"),
        ({"lease": -1.0}, "lease"),
        ({"lease": "60"}, "lease"),
        ({"max_body": -1}, "max_body"),
        ({"methods": ()}, "methods"),
        ({"methods": "POST"}, "methods"),
        ({"required": "yes"}, "required"),
        ({"key_scope": "user"}, "key_scope"),
        ({"store": object()}, "store"),
    ],
)
def test_bad_configuration_names_the_parameter(options: dict[str, Any], match: str) -> None:
    with pytest.raises((TypeError, ValueError), match=match):
        Idempotency(**options)


def test_deadline_header_values_never_raise() -> None:
    """Milliseconds become seconds; junk means no deadline (or the default); capped."""
    assert parse_deadline("1500") == 1.5
    assert parse_deadline(" 250 ") == 0.25
    assert parse_deadline("0") == 0.0
    for junk in ["-5", "1e3", "abc", "", "1" * 16, "\u0661\u0662"]:
        assert parse_deadline(junk) is None
        assert parse_deadline(junk, default=2.0) == 2.0
    assert parse_deadline("90000", maximum=30.0) == 30.0


# -- the middleware on real servers -------------------------------------------------------------


class Payments:
    """The application behind the middleware: records charges; scripted to stall or fail."""

    def __init__(self) -> None:
        self.charges: list[bytes] = []
        self.runs = 0
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Event()
        self.script: list[str] = []  # per run: "raise", "503", or "ok"
        self.lock = threading.Lock()
        self.seen_remaining: list[float | None] = []

    def charge(self, body: bytes) -> tuple[int, bytes]:
        with self.lock:
            self.runs += 1
            step = self.script.pop(0) if self.script else "ok"
        self.entered.set()
        if not self.hold.wait(10.0):
            raise RuntimeError("test never released the held request")
        if step == "raise":
            raise RuntimeError("payments crashed before charging")
        if step == "503":
            return 503, b'{"error": "busy"}'
        with self.lock:
            self.charges.append(body)
            number = len(self.charges)
        return 201, json.dumps({"charge": number}).encode()

    def route(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        if path == "/remaining":
            left = remaining()
            self.seen_remaining.append(left)
            return 200, json.dumps({"remaining": left}).encode()
        return self.charge(body)


def asgi_app(payments: Payments) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        status, payload = await asyncio.to_thread(  # the held request must not block the loop
            _copy_context_call, payments.route, scope["method"], scope["path"], body
        )
        headers = [(b"content-type", b"application/json"), (b"x-app", b"payments")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    return resilience_asgi.IdempotencyMiddleware(
        resilience_asgi.DeadlineMiddleware(app), store=MemoryStore(), lease=30.0
    )


def _copy_context_call(fn: Any, *args: Any) -> Any:
    return fn(*args)  # asyncio.to_thread already runs it in a copy of the caller's context


def wsgi_app(payments: Payments) -> Any:
    def app(environ: Any, start_response: Any) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        status, payload = payments.route(environ["REQUEST_METHOD"], environ["PATH_INFO"], body)
        start_response(f"{status} X", [("Content-Type", "application/json"), ("X-App", "payments")])
        return [payload]

    return resilience_wsgi.IdempotencyMiddleware(
        resilience_wsgi.DeadlineMiddleware(app), store=MemoryStore(), lease=30.0
    )


@pytest.fixture(params=[pytest.param(k, marks=pytest.mark.server) for k in ("asgi", "wsgi")])
def served(request: pytest.FixtureRequest) -> Iterator[tuple[str, Payments]]:
    """The payments app behind the middleware, served for real, ASGI and WSGI alike."""
    payments = Payments()
    if request.param == "asgi":
        with serve_asgi(asgi_app(payments)) as url:
            yield url, payments
    else:
        with serve_wsgi(wsgi_app(payments)) as url:
            yield url, payments
    payments.hold.set()


def post(
    url: str, key: str | None = KEY, body: bytes = b'{"cents": 1250}', caller: str = "Bearer alice"
) -> httpx.Response:
    headers = {"Authorization": caller}
    if key is not None:
        headers["Idempotency-Key"] = key
    return httpx.post(f"{url}/charges", content=body, headers=headers, timeout=10.0)


def test_a_retried_post_charges_once_and_replays_the_answer(
    served: tuple[str, Payments],
) -> None:
    """The same key twice: one charge; the second answer is the first, byte for byte, marked
    ``Idempotent-Replayed: true``."""
    url, payments = served
    with EventRecorder() as recorder:
        first = post(url)
        second = post(url)
    assert first.status_code == 201 and second.status_code == 201
    assert second.content == first.content == b'{"charge": 1}'
    assert second.headers["x-app"] == "payments"
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert len(payments.charges) == 1 and payments.runs == 1
    assert len(recorder.of(IdempotentReplayed)) == 1


def test_a_duplicate_while_the_first_runs_gets_409(served: tuple[str, Payments]) -> None:
    """A retry that arrives while the original is still running is refused with 409 and a
    problem document; once the original is done, the retry gets its response."""
    url, payments = served
    payments.hold.clear()
    payments.entered.clear()
    results: list[httpx.Response] = []
    original = threading.Thread(target=lambda: results.append(post(url)))
    original.start()
    assert payments.entered.wait(10.0)
    with EventRecorder() as recorder:
        duplicate = post(url)
    assert duplicate.status_code == 409
    assert duplicate.headers["content-type"] == "application/problem+json"
    assert duplicate.json()["status"] == 409
    payments.hold.set()
    original.join(10.0)
    assert results[0].status_code == 201
    assert post(url).content == results[0].content
    assert payments.runs == 1 and len(recorder.of(IdempotencyConflict)) == 1


def test_a_key_reused_with_another_payload_gets_422(served: tuple[str, Payments]) -> None:
    url, payments = served
    assert post(url).status_code == 201
    with EventRecorder() as recorder:
        reused = post(url, body=b'{"cents": 9999}')
    assert reused.status_code == 422
    assert reused.json()["title"] == "Idempotency-Key reused"
    assert payments.runs == 1 and len(recorder.of(IdempotencyMismatch)) == 1


def test_malformed_keys_get_400_and_keyless_requests_pass(served: tuple[str, Payments]) -> None:
    url, payments = served
    bad = post(url, key="two words")
    assert bad.status_code == 400 and bad.json()["title"] == "Invalid Idempotency-Key"
    assert post(url, key=None).status_code == 201
    assert post(url, key=None).status_code == 201  # no key: no protection, as asked
    assert payments.runs == 2


def test_what_is_kept(clock: FakeClock) -> None:
    """Done answers are stored; "not processed" (401, 403, 407) and "not done" (408, 425,
    429, every 5xx, such as DeadlineMiddleware's 504) release the claim so the retry runs."""
    rules = Idempotency(store=MemoryStore(clock=clock))
    for status in (401, 403, 407, 408, 425, 429, 500, 502, 503, 504, 599):
        assert not rules.keeps(status), status
    for status in (200, 201, 204, 302, 400, 404, 409, 422):
        assert rules.keeps(status), status


def test_a_handler_that_fails_releases_the_key(served: tuple[str, Payments]) -> None:
    """A crash (500 from the server) or a 503 stores nothing: the retry runs afresh, once."""
    url, payments = served
    payments.script = ["raise", "503"]
    assert post(url).status_code == 500
    assert post(url).status_code == 503
    done = post(url)
    assert done.status_code == 201 and "idempotent-replayed" not in done.headers
    assert post(url).headers["idempotent-replayed"] == "true"
    assert payments.runs == 3 and len(payments.charges) == 1


def test_resilient_transport_and_middleware_make_exactly_once(
    served: tuple[str, Payments],
) -> None:
    """End to end: the client's first attempt times out while payments is still charging; the
    keyed POST is retried (409 while it runs, then the replay): one charge, one answer.

    Under load the retry may reach the server before the first attempt does and run in its
    place (the first then gets 409 on a closed connection): still one charge, one answer."""
    url, payments = served
    payments.hold.clear()
    releaser = threading.Timer(0.3, payments.hold.set)  # payments takes 0.3 s to charge
    releaser.start()
    transport = ResilientTransport(
        retry=Retry(20, backoff=Backoff(initial=0.05, maximum=0.1)),
        attempt_timeout=0.1,
        origins_honour_keys=True,  # payments is behind our IdempotencyMiddleware
        tracing=False,
    )
    try:
        with httpx.Client(transport=transport, headers={"Authorization": "Bearer a"}) as client:
            response = client.post(f"{url}/charges", json={"cents": 1250})
    finally:
        releaser.cancel()
    assert response.status_code == 201
    assert response.json() == {"charge": 1}
    assert payments.runs == 1 and len(payments.charges) == 1


def test_the_callers_deadline_reaches_the_handler(served: tuple[str, Payments]) -> None:
    """``Request-Timeout-Ms`` from a ResilientTransport with a deadline becomes the handler's
    ``remaining()``; no header, no deadline; 0 ms left gets 504 without running."""
    url, payments = served
    with httpx.Client(transport=ResilientTransport(deadline=2.0, tracing=False)) as client:
        left = client.get(f"{url}/remaining").json()["remaining"]
    assert 0.0 < left <= 2.0
    assert httpx.get(f"{url}/remaining").json()["remaining"] is None
    expired = httpx.get(f"{url}/remaining", headers={"Request-Timeout-Ms": "0"})
    assert expired.status_code == 504
    junk = httpx.get(f"{url}/remaining", headers={"Request-Timeout-Ms": "soon"})
    assert junk.json()["remaining"] is None
    assert len(payments.seen_remaining) == 3


def test_asgi_middleware_refuses_a_blocking_store() -> None:
    """A store over a synchronous Redis client would block the event loop: refused up front."""

    class SyncStore(MemoryStore):
        is_async = False

    with pytest.raises(TypeError, match="store"):
        resilience_asgi.IdempotencyMiddleware(asgi_app(Payments()), store=SyncStore())


def test_required_keys(clock: FakeClock) -> None:
    """With ``required=True`` a keyless POST is refused with 400; GET is never affected."""
    rules = Idempotency(required=True, store=MemoryStore(clock=clock))
    refused = rules.screen([], {})
    assert not isinstance(refused, str) and refused.response is not None
    assert refused.response.status == 400
    assert "GET" not in rules.methods  # the shells pass other methods through unread


def test_key_scope_keeps_callers_apart(clock: FakeClock) -> None:
    """Two callers using the same key value never see each other's records."""
    rules = Idempotency(key_scope=lambda request: request["user"], store=MemoryStore(clock=clock))
    alice = rules.screen([KEY], {"user": "alice"})
    bob = rules.screen([KEY], {"user": "bob"})
    assert isinstance(alice, str) and isinstance(bob, str) and alice != bob


@pytest.mark.server
@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_a_replay_is_an_event_on_the_server_span(kind: str) -> None:
    """Behind OpenTelemetry's own ASGI/WSGI middleware, a replayed POST shows
    ``resilience.idempotency.replayed`` on that request's SERVER span, and is counted."""
    from opentelemetry.trace import SpanKind

    from resilience.instrumentation import instrument
    from tests.test_instrumentation import Telemetry

    otel = Telemetry()
    payments = Payments()
    if kind == "asgi":
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware as AsgiOtel

        app: Any = AsgiOtel(asgi_app(payments), tracer_provider=otel.tracer_provider)
        serve: Any = serve_asgi
    else:
        from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware as WsgiOtel

        app = WsgiOtel(wsgi_app(payments), tracer_provider=otel.tracer_provider)
        serve = serve_wsgi
    undo = instrument(meter_provider=otel.meter_provider)
    try:
        with serve(app) as url:
            post(url)
            post(url)
    finally:
        undo()
    servers = [span for span in otel.spans() if span.kind is SpanKind.SERVER]
    assert len(servers) == 2
    first, second = sorted(servers, key=lambda span: span.start_time or 0)
    assert [e.name for e in first.events if e.name.startswith("resilience.")] == []
    assert [e.name for e in second.events if e.name.startswith("resilience.")] == [
        "resilience.idempotency.replayed"
    ]
    (point,) = otel.points("resilience.idempotency.requests")
    assert point.value == 1 and point.attributes["resilience.outcome"] == "replayed"


def test_a_cancelled_asgi_request_releases_its_claim(clock: FakeClock) -> None:
    """The client goes away and the server cancels the handler mid-run: the key is free again,
    so the client's retry runs instead of meeting 409 until the lease ends."""
    store = MemoryStore(clock=clock)
    entered = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        entered.set()
        await asyncio.Event().wait()  # never answers

    middleware = resilience_asgi.IdempotencyMiddleware(app, store=store, lease=30.0)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/charges",
        "query_string": b"",
        "headers": [(b"idempotency-key", KEY.encode()), (b"authorization", b"Bearer a")],
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: Any) -> None:
        return None

    async def scenario() -> None:
        task = asyncio.create_task(middleware(scope, receive, send))
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    key = middleware.rules.screen([KEY], scope, "Bearer a")
    assert isinstance(key, str)
    assert store.idempotency_claim(
        key, fingerprint("POST", "/charges", "", b"{}"), 30.0
    ).outcome == ("claimed")


@pytest.mark.server
def test_a_rerun_handler_repeats_its_downstream_keys(clock: FakeClock) -> None:
    """order -> payments -> bank, payments and bank behind IdempotencyMiddleware. The first run
    of the payments handler charges the bank, then crashes; the order service retries with the
    same key; the handler runs again and its bank call carries the same derived key, so the bank
    replays instead of charging twice. Two charges in one handler get different keys."""
    from resilience.http import AsyncResilientTransport

    bank_charges: list[bytes] = []
    bank_keys: list[str] = []

    async def bank(scope: Any, receive: Any, send: Any) -> None:
        body = (await receive()).get("body", b"")
        bank_charges.append(body)
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"charged %d" % len(bank_charges)})

    guarded_bank = resilience_asgi.IdempotencyMiddleware(bank, shared_keys=True)

    async def bank_front(scope: Any, receive: Any, send: Any) -> None:  # sees every request
        if scope["type"] == "http":
            bank_keys.append(dict(scope["headers"])[b"idempotency-key"].decode())
        await guarded_bank(scope, receive, send)

    runs: list[str] = []

    with serve_asgi(bank_front) as bank_url:

        async def payments(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            async with httpx.AsyncClient(transport=AsyncResilientTransport()) as client:
                first = await client.post(f"{bank_url}/charges", content=b"card")
                fee = await client.post(f"{bank_url}/charges", content=b"fee")
            runs.append(first.headers.get("idempotent-replayed", "fresh"))
            if len(runs) == 1:
                raise RuntimeError("payments crashed after charging the bank")
            body = first.content + b" / " + fee.content
            await send({"type": "http.response.start", "status": 201, "headers": []})
            await send({"type": "http.response.body", "body": body})

        app = resilience_asgi.IdempotencyMiddleware(payments)
        with serve_asgi(app) as payments_url:
            crashed = post(payments_url)
            retried = post(payments_url)
    assert crashed.status_code == 500
    assert retried.status_code == 201 and retried.content == b"charged 1 / charged 2"
    assert runs == ["fresh", "true"]  # the re-run's bank call was a replay
    assert bank_charges == [b"card", b"fee"]  # charged once each
    card_first, fee_first, card_again, fee_again = bank_keys
    assert (card_first, fee_first) == (card_again, fee_again)  # the same keys on the re-run
    assert card_first != fee_first  # two calls, two keys


def test_derived_keys_are_uuid_shaped_and_depend_on_the_incoming_key() -> None:
    import uuid

    from resilience._context import KeyScope

    one, same, other = KeyScope("k1"), KeyScope("k1"), KeyScope("k2")
    keys = [one.derive("POST", "http://127.0.0.1/a") for _ in range(2)]
    assert keys == [same.derive("POST", "http://127.0.0.1/a") for _ in range(2)]
    assert keys[0] != keys[1]
    assert other.derive("POST", "http://127.0.0.1/a") != keys[0]
    parsed = uuid.UUID(keys[0])
    assert (parsed.version, parsed.variant, str(parsed)) == (8, uuid.RFC_4122, keys[0])


@pytest.mark.server
@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_a_keyed_body_over_max_body_gets_413(kind: str) -> None:
    """Bodies are fingerprinted in memory: past ``max_body`` a keyed request is refused (413)
    without running the handler; keyless requests are not read by the middleware at all."""
    payments = Payments()
    if kind == "asgi":
        app: Any = resilience_asgi.IdempotencyMiddleware(
            resilience_asgi.DeadlineMiddleware(asgi_app(payments).app.app), max_body=8
        )
        serve: Any = serve_asgi
    else:
        app = resilience_wsgi.IdempotencyMiddleware(wsgi_app(payments).app, max_body=8)
        serve = serve_wsgi
    with serve(app) as url:
        refused = post(url, body=b"x" * 9)
        small = post(url, body=b"x" * 8)
        keyless = post(url, key=None, body=b"x" * 100)
    assert refused.status_code == 413 and refused.json()["status"] == 413
    assert (small.status_code, keyless.status_code) == (201, 201)
    assert payments.runs == 2


def test_asgi_middleware_passes_other_scopes_through() -> None:
    """Lifespan and websocket scopes go to the app untouched by all three middleware."""
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    limiter = RateLimiter(1)
    stack = resilience_asgi.IdempotencyMiddleware(
        resilience_asgi.DeadlineMiddleware(resilience_asgi.RateLimitMiddleware(app, limiter))
    )

    async def nothing() -> dict[str, Any]:
        return {}

    async def ignore(message: Any) -> None:
        return None

    for kind in ("lifespan", "websocket"):
        asyncio.run(stack({"type": kind}, nothing, ignore))
    assert seen == ["lifespan", "websocket"]
