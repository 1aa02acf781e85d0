"""The idempotency and deadline middleware under hostile input, on real servers: uvicorn (ASGI,
in this process) and gunicorn (WSGI, a child process), raw sockets for broken bodies, and a
real redis-server for outages. Each test drives both shells through HTTP only."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from resilience import asgi as resilience_asgi
from resilience.stores import RedisStore
from resilience.testing import serve_asgi
from tests.redis_server import RedisServer
from tests.server_apps import BIG, Ledger, asgi_app
from tests.wsgi_server import serve_gunicorn

KEY = '"5f0c2b8e-7a51-4e6f-9d43-0b5c7e2a9f11"'
BODY = b'{"cents": 1250}'

Serve = Callable[..., AbstractContextManager[str]]

pytestmark = pytest.mark.server


@contextmanager
def _serve(kind: str, redis: RedisServer | None = None, **options: Any) -> Iterator[str]:
    """The test app behind ``IdempotencyMiddleware(DeadlineMiddleware(app), **options)``."""
    if kind == "wsgi":
        with serve_gunicorn(options, redis.url if redis is not None else None) as url:
            try:
                yield url
            finally:
                httpx.get(f"{url}/release")
        return
    ledger = Ledger()
    tenant = options.pop("tenant_scope", False)
    if tenant == "type":  # a broken key_scope: returns the value's length, not a str
        options["key_scope"] = lambda scope: len(dict(scope["headers"]).get(b"x-tenant", b""))
    elif tenant:  # the X-Tenant header's value ("" when sent empty), as in tests.server_apps
        options["key_scope"] = _tenant
    if redis is not None:
        client: Any = redis.async_client()
        options["store"] = RedisStore(client)
        options.setdefault("name", "payments")  # a shared store's records need a namespace
        ledger.on_shutdown.append(client.aclose)
    app = resilience_asgi.IdempotencyMiddleware(
        resilience_asgi.DeadlineMiddleware(asgi_app(ledger)), **options
    )
    with serve_asgi(app, log_level="critical") as url:
        try:
            yield url
        finally:
            httpx.get(f"{url}/release")
            httpx.get(f"{url}/shutdown")


def _tenant(scope: Any) -> str | None:
    tenant: bytes | None = dict(scope["headers"]).get(b"x-tenant")
    return None if tenant is None else tenant.decode()


@pytest.fixture(params=["asgi", "wsgi"])
def serve(request: pytest.FixtureRequest) -> Serve:
    """Serve the app on uvicorn (asgi) or gunicorn (wsgi): ``with serve(**options) as url``."""

    def start(**options: Any) -> AbstractContextManager[str]:
        return _serve(request.param, **options)

    start.kind = request.param  # type: ignore[attr-defined]
    return start


def charge(
    url: str,
    *,
    key: str | None = KEY,
    body: bytes = BODY,
    caller: str | None = "Bearer alice",
    test: str = "ok",
    headers: dict[str, str] | None = None,
    path: str = "/charges",
) -> httpx.Response:
    sent = {"X-Test": test, **(headers or {})}
    if key is not None:
        sent["Idempotency-Key"] = key
    if caller is not None:
        sent["Authorization"] = caller
    return httpx.post(f"{url}{path}", content=body, headers=sent, timeout=20.0)


def stats(url: str) -> dict[str, Any]:
    result: dict[str, Any] = httpx.get(f"{url}/stats", timeout=10.0).json()
    return result


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll ``condition`` (bounded), for state that lives in another thread or process."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        threading.Event().wait(0.02)


def held_charge(url: str, test: str = "hold") -> tuple[threading.Thread, list[httpx.Response]]:
    """Start a charge whose handler holds (until ``/release``) in a thread; return once the
    handler runs, with the thread and the list its answer will be put in."""
    answers: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: answers.append(charge(url, test=test)))
    thread.start()
    wait_until(lambda: stats(url)["held"] == 1, "the first request to run")
    return thread, answers


# -- #12 item 1: records per caller; per-caller headers never stored ---------------------------


def test_another_caller_with_the_same_key_is_not_replayed(serve: Serve) -> None:
    """Bob sending Alice's key (and payload) runs his own request: he never gets her stored
    response nor her Set-Cookie; Alice's retry is replayed, without the Set-Cookie."""
    with serve() as url:
        alice = charge(url, caller="Bearer alice")
        bob = charge(url, caller="Bearer bob")
        again = charge(url, caller="Bearer alice")
        runs = stats(url)["runs"]
    assert alice.status_code == bob.status_code == 201
    assert "idempotent-replayed" not in bob.headers
    assert bob.headers["set-cookie"] != alice.headers["set-cookie"]
    assert again.headers["idempotent-replayed"] == "true" and again.content == alice.content
    assert "set-cookie" not in again.headers
    assert runs == 2


def test_a_keyed_request_without_a_caller_identity_is_refused(serve: Serve) -> None:
    """No Authorization (the default identity): 400 problem, the handler does not run;
    a request without a key is not concerned."""
    with serve() as url:
        anonymous = charge(url, caller=None)
        keyless = charge(url, caller=None, key=None)
        runs = stats(url)["runs"]
    assert anonymous.status_code == 400
    assert anonymous.headers["content-type"] == "application/problem+json"
    assert anonymous.json()["title"] == "Caller identity required"
    assert keyless.status_code == 201 and runs == 1


def test_a_named_cookie_identifies_the_caller(serve: Serve) -> None:
    """``caller_cookie="sid"``: the session cookie scopes the records."""
    with serve(caller_header=None, caller_cookie="sid") as url:
        one = charge(url, caller=None, headers={"Cookie": "theme=dark; sid=one"})
        same = charge(url, caller=None, headers={"Cookie": "sid=one"})
        other = charge(url, caller=None, headers={"Cookie": "sid=two"})
        none = charge(url, caller=None, headers={"Cookie": "theme=dark"})
    assert one.status_code == same.status_code == other.status_code == 201
    assert same.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in other.headers
    assert none.status_code == 400


def test_a_response_is_kept_behind_a_deadline(serve: Serve) -> None:
    """With ``Request-Timeout-Ms`` (``DeadlineMiddleware`` in force inside) a finished
    response is stored and replayed like any other."""
    with serve() as url:
        first = charge(url, headers={"Request-Timeout-Ms": "20000"})
        again = charge(url, headers={"Request-Timeout-Ms": "20000"})
        runs = stats(url)["runs"]
    assert again.headers["idempotent-replayed"] == "true" and again.content == first.content
    assert runs == 1


# -- #12 item 15: unambiguous records and fingerprints ------------------------------------------


def test_a_colon_in_a_key_does_not_join_two_callers_records(serve: Serve) -> None:
    """Tenant ``a`` with key ``b:c`` and tenant ``a:b`` with key ``c`` are two records."""
    with serve(tenant_scope=True) as url:
        first = charge(url, key="b:c", headers={"X-Tenant": "a"})
        second = charge(url, key="c", headers={"X-Tenant": "a:b"})
        runs = stats(url)["runs"]
    assert first.status_code == second.status_code == 201
    assert "idempotent-replayed" not in second.headers and runs == 2


def test_an_empty_key_scope_is_no_caller_identity(serve: Serve) -> None:
    """``key_scope`` answering ``""`` (an empty X-Tenant) names nobody: 400, the handler never
    runs, so two anonymous callers never share one record (before: the second was replayed
    the first one's response)."""
    with serve(tenant_scope=True) as url:
        first = charge(url, headers={"X-Tenant": ""}, caller="Bearer alice")
        second = charge(url, headers={"X-Tenant": ""}, caller="Bearer bob")
        named = charge(url, headers={"X-Tenant": "acme"})
        runs = stats(url)["runs"]
    assert first.status_code == second.status_code == 400
    assert first.json()["title"] == "Caller identity required"
    assert "idempotent-replayed" not in second.headers
    assert named.status_code == 201 and runs == 1


def test_a_key_scope_of_another_type_is_a_500_problem(serve: Serve) -> None:
    """``key_scope`` answering an int: a 500 problem+json on each keyed request, the handler
    never runs; keyless requests are not concerned."""
    with serve(tenant_scope="type") as url:
        keyed = charge(url, headers={"X-Tenant": "acme"})
        keyless = charge(url, key=None, headers={"X-Tenant": "acme"})
        runs = stats(url)["runs"]
    assert keyed.status_code == 500
    assert keyed.headers["content-type"] == "application/problem+json"
    assert keyed.json()["title"] == "Caller identity unavailable"
    assert keyless.status_code == 201 and runs == 1


def test_a_key_scope_of_another_type_is_logged_by_type_not_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The log line of a misbehaving ``key_scope`` names it and the type it returned, never
    the value (which may be a credential)."""
    with (
        caplog.at_level(logging.ERROR, logger="resilience"),
        _serve("asgi", tenant_scope="type") as url,
    ):
        charge(url, headers={"X-Tenant": "s3cret-tenant"})
    errors = [r.getMessage() for r in caplog.records if r.name == "resilience"]
    assert errors == [
        "resilience: idempotency 'idempotency': key_scope returned an object of type int, "
        "not a str or None; keyed requests are answered 500 until it is fixed"
    ]


def test_a_nul_in_the_path_does_not_make_two_payloads_one() -> None:
    """``POST /a%00x`` with body ``B`` and ``POST /a?x`` with body ``\\0B`` differ: the same key
    on both is a reused key (422), not a replay (ASGI paths may hold a NUL)."""
    with _serve("asgi") as url:
        first = charge(url, path="/a%00x", body=b"B")
        second = charge(url, path="/a?x", body=b"\x00B")
    assert first.status_code == 201
    assert second.status_code == 422


@pytest.mark.parametrize(("first", "second"), [("/a%ff", "/a%fe"), ("/a%2Fb", "/a/b")])
def test_paths_that_decode_alike_are_two_payloads(serve: Serve, first: str, second: str) -> None:
    """``/a%ff`` then ``/a%fe`` (uvicorn decodes both to U+FFFD), or ``/a%2Fb`` then ``/a/b``,
    under one key: the second is a reused key (422), never the first one's replay; the same
    bytes again are replayed."""
    with serve() as url:
        original = charge(url, path=first)
        other = charge(url, path=second)
        again = charge(url, path=first)
    assert original.status_code == 201
    assert other.status_code == 422, other.headers
    assert again.headers["idempotent-replayed"] == "true"


# -- #12 item 17: the key field on the wire; 409 and its Retry-After -------------------------


def test_two_key_field_lines_are_refused(serve: Serve) -> None:
    """Two ``Idempotency-Key`` field lines: 400, in both shells (raw socket: httpx joins them)."""
    with serve() as url:
        host, port = urlsplit(url).hostname, urlsplit(url).port
        request = (
            b"POST /charges HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer alice\r\n"
            b'Idempotency-Key: "one"\r\nIdempotency-Key: "two"\r\n'
            b"Content-Length: 2\r\nConnection: close\r\n\r\n{}"
        )
        with socket.create_connection((host, port), timeout=10) as conn:
            conn.sendall(request)
            answer = b""
            while chunk := conn.recv(65536):
                answer += chunk
        runs = stats(url)["runs"]
    assert answer.startswith(b"HTTP/1.1 400"), answer[:80]
    assert runs == 0


def test_keys_that_are_not_strings_are_refused(serve: Serve) -> None:
    """sf-Integer, Decimal, Byte Sequence, Boolean and parameters are not keys: 400 problem,
    in both shells; the handler never runs."""
    values = ["123", "4.5", ":YWJj:", "?1", '"abc";x=1']
    with serve() as url:
        refused = {value: charge(url, key=value) for value in values}
        runs = stats(url)["runs"]
    assert {value: r.status_code for value, r in refused.items()} == dict.fromkeys(values, 400)
    assert all(r.json()["title"] == "Invalid Idempotency-Key" for r in refused.values())
    assert runs == 0


def test_a_conflict_says_when_to_retry(serve: Serve) -> None:
    """The 409 for a request still running carries ``Retry-After``."""
    with serve() as url:
        first, _ = held_charge(url)
        conflict = charge(url, test="hold")
        httpx.get(f"{url}/release")
        first.join(20)
    assert conflict.status_code == 409
    assert int(conflict.headers["retry-after"]) >= 1


# -- #12 item 2: a truncated body is never run ------------------------------------------------


def test_a_body_cut_short_never_reaches_the_handler(serve: Serve) -> None:
    """A keyed POST that promises 24 bytes, sends 10 and leaves: nothing runs, nothing is
    kept; the retry with the whole body runs (not 422)."""
    whole = b"amount=1000&currency=eur"
    assert len(whole) == 24
    with serve() as url:
        host, port = urlsplit(url).hostname, urlsplit(url).port
        head = (
            b"POST /charges HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer alice\r\n"
            b"Idempotency-Key: " + KEY.encode() + b"\r\nContent-Length: 24\r\n\r\n"
        )
        with socket.create_connection((host, port), timeout=10) as conn:
            conn.sendall(head + whole[:10])
            conn.shutdown(socket.SHUT_WR)
            while conn.recv(65536):  # until the server closes its side
                pass
        cut = stats(url)
        retry = charge(url, body=whole)
        after = stats(url)
    assert cut["runs"] == 0 and cut["charges"] == []
    assert retry.status_code == 201
    assert after["charges"] == [whole.decode()]


# -- #12 item 3: chunked request bodies ---------------------------------------------------------


def _chunks(*parts: bytes) -> Iterator[bytes]:
    yield from parts  # httpx sends a generator with Transfer-Encoding: chunked


def test_a_chunked_body_is_read_to_the_end(serve: Serve) -> None:
    """A chunked keyed body (gunicorn de-chunks it and sets ``wsgi.input_terminated``) reaches
    the app whole, a second one under the same key is a reused key (422), and ``max_body``
    bounds it (413)."""
    with serve(max_body=64) as url:
        headers = {"Idempotency-Key": KEY, "Authorization": "Bearer alice"}
        first = httpx.post(f"{url}/charges", content=_chunks(b"amount=", b"1000"), headers=headers)
        other = httpx.post(f"{url}/charges", content=_chunks(b"amount=", b"9999"), headers=headers)
        headers["Idempotency-Key"] = '"another"'
        large = httpx.post(f"{url}/charges", content=_chunks(b"x" * 40, b"y" * 40), headers=headers)
        seen = stats(url)
    assert first.status_code == 201 and seen["charges"] == ["amount=1000"]
    assert other.status_code == 422
    assert large.status_code == 413 and seen["runs"] == 1


def test_a_chunked_keyed_request_gets_411_where_the_server_cannot_end_it() -> None:
    """wsgiref passes chunked bodies through undecoded and unterminated: the middleware cannot
    read them safely, so a keyed one gets 411 and does not run."""
    from resilience.testing import serve_wsgi
    from resilience.wsgi import DeadlineMiddleware, IdempotencyMiddleware
    from tests.server_apps import wsgi_app

    ledger = Ledger()
    app = IdempotencyMiddleware(DeadlineMiddleware(wsgi_app(ledger)))
    with serve_wsgi(app) as url:
        headers = {"Idempotency-Key": KEY, "Authorization": "Bearer alice", "Connection": "close"}
        refused = httpx.post(f"{url}/charges", content=_chunks(b"a=", b"1"), headers=headers)
    assert refused.status_code == 411 and ledger.runs == 0


# -- #12 item 11: failures and refusals are not stored -------------------------------------------


@pytest.mark.parametrize("test", ["crash", "401"])
def test_failures_and_refusals_are_not_replayed(serve: Serve, test: str) -> None:
    """A view that crashes (500, rendered inside the WSGI app as Flask does) or answers 401 is
    not kept: the retry runs again and succeeds."""
    with serve() as url:
        failed = charge(url, test=test)
        retried = charge(url)
        runs = stats(url)["runs"]
    assert failed.status_code == (500 if test == "crash" else 401)
    assert retried.status_code == 201 and "idempotent-replayed" not in retried.headers
    assert runs == 2


# -- #12 item 7: big and streamed responses ---------------------------------------------------


@pytest.mark.parametrize("test", ["big", "stream"])
def test_big_or_streamed_responses_pass_through_and_are_not_kept(serve: Serve, test: str) -> None:
    """A response over ``max_response`` (1 MiB), or streamed without a length, reaches the
    client whole but is not stored: its retry gets 410 and does not run the handler again."""
    with serve() as url:
        first = charge(url, test=test)
        retry = charge(url, test=test)
        runs = stats(url)["runs"]
    expected = b"x" * BIG if test == "big" else b"chunk 0;chunk 1;chunk 2;"
    assert first.status_code == 201 and first.content == expected
    assert retry.status_code == 410 and retry.json()["title"] == "Response not kept"
    assert runs == 1


# -- #12 items 12 and 17: the deadline inside the app -----------------------------------------


def test_a_body_written_through_write_is_kept_and_replayed() -> None:
    """A WSGI app writing its body through ``start_response``'s ``write()`` (then returning a
    last chunk): the client gets it all in order, and the retry is replayed with the same
    bytes, never an empty body; over ``max_response`` it passes through, not kept (410)."""
    with _serve("wsgi") as url:
        first = charge(url, test="write")
        again = charge(url, test="write")
        big = charge(url, test="write-big", key='"written-big"')
        big_again = charge(url, test="write-big", key='"written-big"')
        runs = stats(url)["runs"]
    assert first.status_code == 201 and first.content == b"written 0;written 1;written 2;tail;"
    assert again.headers["idempotent-replayed"] == "true" and again.content == first.content
    assert big.status_code == 201 and big.content == b"x" * BIG + b"tail;"
    assert big_again.status_code == 410
    assert runs == 2


def test_a_deadline_that_runs_out_in_the_app_is_a_504_problem(serve: Serve) -> None:
    """The caller's ``Request-Timeout-Ms`` runs out inside the handler: 504 as a problem
    document (not 500), and not stored: the retry with time runs."""
    with serve() as url:
        late = charge(url, test="deadline", headers={"Request-Timeout-Ms": "100"})
        retry = charge(url)
        runs = stats(url)["runs"]
    assert late.status_code == 504
    assert late.headers["content-type"] == "application/problem+json"
    assert late.json()["status"] == 504
    assert retry.status_code == 201 and runs == 2


def test_no_time_left_on_arrival_is_a_504_problem(serve: Serve) -> None:
    """``Request-Timeout-Ms: 0``: 504 problem+json without running."""
    with serve() as url:
        expired = httpx.get(f"{url}/stats", headers={"Request-Timeout-Ms": "0"})
    assert expired.status_code == 504
    assert expired.headers["content-type"] == "application/problem+json"


def test_a_streamed_response_stays_streamed_under_a_deadline(serve: Serve) -> None:
    """With ``Request-Timeout-Ms`` the first chunk arrives before the app makes the second, and
    the deadline is still in force while it makes it."""
    with serve() as url:
        headers = {"Request-Timeout-Ms": "20000"}
        with httpx.stream("GET", f"{url}/gated", headers=headers, timeout=10.0) as response:
            chunks = response.iter_raw()
            first = next(chunks)
            httpx.get(f"{url}/release")
            rest = b"".join(chunks)
    assert first == b"first;"
    left = json.loads(rest)["remaining"]
    assert left is not None and 0.0 < left <= 20.0


def test_django_responses_are_kept_and_its_streams_are_not() -> None:
    """Django's ``HttpResponse`` has no ``Content-Length`` yet is whole: it is stored and
    replayed; a ``StreamingHttpResponse`` streams through and is not kept (410)."""
    import types

    import django
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application
    from django.http import JsonResponse, StreamingHttpResponse
    from django.urls import path

    from resilience.testing import serve_wsgi
    from resilience.wsgi import DeadlineMiddleware, IdempotencyMiddleware

    runs: list[str] = []

    def refund(request: Any) -> Any:
        runs.append("refund")
        return JsonResponse({"refund": len(runs)}, status=201)

    def export(request: Any) -> Any:
        runs.append("export")
        return StreamingHttpResponse((b"row %d;" % n for n in range(3)), status=201)

    urls = types.ModuleType("resilience_test_urls")
    urls.urlpatterns = [path("refunds", refund), path("exports", export)]  # type: ignore[attr-defined]
    if not settings.configured:
        settings.configure(ALLOWED_HOSTS=["*"], SECRET_KEY="test", MIDDLEWARE=[])
        django.setup()
    settings.ROOT_URLCONF = urls
    app = IdempotencyMiddleware(DeadlineMiddleware(get_wsgi_application()))
    deadline = {"Request-Timeout-Ms": "20000"}  # DeadlineMiddleware's wrapping changes nothing
    with serve_wsgi(app) as url:
        refunded = [charge(url, path="/refunds", headers=deadline) for _ in range(2)]
        exported = [
            charge(url, path="/exports", key='"export-1"', headers=deadline) for _ in range(2)
        ]
    assert [r.status_code for r in refunded] == [201, 201]
    assert refunded[1].headers["idempotent-replayed"] == "true"
    assert refunded[1].content == refunded[0].content
    assert exported[0].content == b"row 0;row 1;row 2;" and exported[1].status_code == 410
    assert runs == ["refund", "export"]


def test_refusals_are_logged_without_set_up_and_without_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A replay, a reused key, a malformed key and a spent deadline are logged on
    ``resilience.server`` at INFO with no listener subscribed; neither the key nor the
    caller's credential appears in the log."""
    with caplog.at_level(logging.INFO, logger="resilience.server"), _serve("asgi") as url:
        charge(url, key='"secret-key-1"', caller="Bearer s3cret")
        charge(url, key='"secret-key-1"', caller="Bearer s3cret")
        charge(url, key='"secret-key-1"', caller="Bearer s3cret", body=b"other")
        charge(url, key="12", caller="Bearer s3cret")
        charge(url, caller="Bearer s3cret", headers={"Request-Timeout-Ms": "0"})
    decisions = [
        getattr(record, "resilience_decision", None)
        for record in caplog.records
        if record.name == "resilience.server"
    ]
    assert decisions == ["replayed", "key_reused", "invalid_key", "deadline_exceeded"]
    assert "secret-key-1" not in caplog.text and "s3cret" not in caplog.text
