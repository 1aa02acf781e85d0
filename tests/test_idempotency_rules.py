"""The sans-IO rules of server-side idempotency: unambiguous encodings (hypothesis), keys on the
wire, callers, what is kept; and the shells' order of storing and sending, and lost claims."""

from __future__ import annotations

import ast
import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from resilience import IdempotencyClaimLost
from resilience import asgi as resilience_asgi
from resilience import wsgi as resilience_wsgi
from resilience._idempotency.policy import Idempotency
from resilience._idempotency.rules import (
    NOT_STORED_HEADERS,
    caller_scope,
    cookie_value,
    fingerprint,
    parse_key,
    record_name,
    storable_headers,
)
from resilience.stores import MemoryStore
from resilience.testing import EventRecorder

ROOT = Path(__file__).resolve().parent.parent
KEY = '"9d2e1f3a-0b4c-4d5e-8f6a-7b8c9d0e1f2a"'

texts = st.text(max_size=12)


# -- #12 item 15: distinct inputs, distinct records -------------------------------------------


@given(texts, texts, texts, texts, texts, texts)
@example("a", "b:c", "d", "a", "b", "c:d")  # the old ``f"{name}:{scope}:{key}"`` joined these
@example("a", "1:b", "c", "a", "", "1:bc")
def test_record_names_are_unambiguous(n1: str, s1: str, k1: str, n2: str, s2: str, k2: str) -> None:
    """Two different (name, scope, key) triples never share a record name."""
    assert (record_name(n1, s1, k1) == record_name(n2, s2, k2)) == ((n1, s1, k1) == (n2, s2, k2))


@given(texts, texts, texts, st.binary(max_size=12), texts, texts, texts, st.binary(max_size=12))
@example("POST", "/a\x00x", "", b"B", "POST", "/a", "x", b"\x00B")  # the old NUL join
@example("POST", "/a", "b", b"", "POST", "/ab", "", b"")
def test_fingerprints_are_unambiguous(
    m1: str, p1: str, q1: str, b1: bytes, m2: str, p2: str, q2: str, b2: bytes
) -> None:
    """Two different (method, path, query, body) payloads never share a fingerprint."""
    same = fingerprint(m1, p1, q1, b1) == fingerprint(m2, p2, q2, b2)
    assert same == ((m1, p1, q1, b1) == (m2, p2, q2, b2))


@given(st.none() | texts, st.none() | texts, st.none() | texts, st.none() | texts)
@example("x", None, None, "x")
def test_caller_scopes_are_unambiguous(
    c1: str | None, k1: str | None, c2: str | None, k2: str | None
) -> None:
    """Credentials and cookies never stand for one another; no identity gives no scope."""
    one, two = caller_scope(c1, k1), caller_scope(c2, k2)
    assert (one is None) == (c1 is None and k1 is None)
    if one is not None and two is not None:
        assert (one == two) == ((c1, k1) == (c2, k2))
    assert "s3cret" not in (caller_scope("Bearer s3cret", "s3cret") or "")  # only a hash


# -- #12 items 1 and 17: keys, callers, headers -------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (KEY, "9d2e1f3a-0b4c-4d5e-8f6a-7b8c9d0e1f2a"),
        ("9d2e1f3a-0b4c-4d5e-8f6a-7b8c9d0e1f2a", "9d2e1f3a-0b4c-4d5e-8f6a-7b8c9d0e1f2a"),
        ('"123"', "123"),  # a number as an sf-string is a key
        ("abc:def", "abc:def"),
        ("*tok", "*tok"),
    ],
)
def test_keys_are_sf_strings_or_bare_tokens(raw: str, key: str) -> None:
    """The draft's sf-string and Stripe's bare keys are accepted."""
    assert parse_key(raw) == key


@pytest.mark.parametrize(
    "raw", ["123", "-1", "4.5", ":YWJj:", "?1", '"abc";x=1', '"a", "b"', "a b", '""', "x" * 256]
)
def test_other_structured_values_are_not_keys(raw: str) -> None:
    """Integers, decimals, byte sequences, booleans, parameters and lists are refused."""
    with pytest.raises(ValueError, match="Idempotency-Key"):
        parse_key(raw)


def test_cookie_values_never_raise() -> None:
    """The named cookie is found among others; junk pairs are skipped."""
    assert cookie_value("a=1; sid=abc ; b", "sid") == "abc"
    assert cookie_value("sid", "sid") is None
    assert cookie_value(None, "sid") is None and cookie_value("=;;", "sid") is None


def test_per_caller_headers_are_not_stored() -> None:
    """Set-Cookie, authentication results and hop-by-hop fields are dropped, any case."""
    headers = [(b"Set-Cookie", b"a=1"), (b"content-type", b"json"), (b"Connection", b"close")]
    assert storable_headers(headers) == [(b"content-type", b"json")]
    assert {b"set-cookie", b"authentication-info", b"transfer-encoding"} <= NOT_STORED_HEADERS


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"caller_header": None}, "per caller"),
        ({"shared_keys": True, "key_scope": lambda request: "x"}, "exclude"),
        ({"caller_header": "Bad Header"}, "caller_header"),
        ({"caller_cookie": "a;b"}, "caller_cookie"),
        ({"max_response": -1}, "max_response"),
        ({"fail_open": "yes"}, "fail_open"),
        ({"shared_keys": 1}, "shared_keys"),
        ({"name": ""}, "name"),
    ],
)
def test_bad_caller_options_are_refused_at_construction(
    options: dict[str, Any], match: str
) -> None:
    """A middleware that cannot tell callers apart does not start: it must be told how (or
    told, explicitly, that all callers share keys)."""
    with pytest.raises((TypeError, ValueError), match=match):
        Idempotency(**options)


@pytest.mark.parametrize("answer", [None, ""])
def test_key_scope_answering_nobody_is_no_caller_identity(answer: str | None) -> None:
    """``key_scope`` answering ``None`` or ``""``: 400, no record (``""`` is not a namespace
    everybody shares)."""
    rules = Idempotency(key_scope=lambda request: answer)
    verdict = rules.screen([KEY], {})
    assert not isinstance(verdict, str) and verdict.response is not None
    assert (verdict.response.status, verdict.decision) == (400, "no_caller_identity")


@pytest.mark.parametrize("answer", [123, b"acme", ("acme",)])
def test_key_scope_answering_another_type_is_a_500_logged_by_type(
    answer: object, caplog: pytest.LogCaptureFixture
) -> None:
    """``key_scope`` answering a non-string: a 500 problem, no record; the log names
    ``key_scope`` and the type, never the value."""
    rules = Idempotency(key_scope=lambda request: answer)
    with caplog.at_level(logging.ERROR, logger="resilience"):
        verdict = rules.screen([KEY], {})
    assert not isinstance(verdict, str) and verdict.response is not None
    assert (verdict.response.status, verdict.decision) == (500, "key_scope_invalid")
    assert verdict.response.headers[0] == (b"content-type", b"application/problem+json")
    [message] = [r.getMessage() for r in caplog.records]
    assert f"key_scope returned an object of type {type(answer).__qualname__}," in message
    assert "acme" not in message and "123" not in message


def test_a_conflict_advises_a_wait_from_how_long_handlers_take() -> None:
    """The 409's Retry-After follows typical handler time, within [1 s, lease]."""
    from resilience.stores import Claim

    rules = Idempotency(lease=10.0, shared_keys=True)
    for _ in range(50):
        rules.took(4.2)
    slow = rules.judge(Claim("in_progress")).response
    assert slow is not None and (b"retry-after", b"5") in slow.headers
    for _ in range(50):
        rules.took(60.0)
    capped = rules.judge(Claim("in_progress")).response
    assert capped is not None and (b"retry-after", b"10") in capped.headers


# -- #12 item 17: the ASGI shell stores before the last chunk leaves --------------------------


def _scope() -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": "/charges",
        "query_string": b"",
        "headers": [(b"idempotency-key", KEY.encode()), (b"authorization", b"Bearer a")],
    }


def test_asgi_stores_the_record_before_the_last_chunk_is_sent() -> None:
    """A retry that follows the response at once finds the record: the final body chunk is
    sent only after the store has the response."""
    order: list[str] = []

    class Store(MemoryStore):
        async def idempotency_complete_async(self, *args: Any, **kwargs: Any) -> Any:
            order.append("stored")
            return await super().idempotency_complete_async(*args, **kwargs)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"b"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}"}

    async def send(message: Any) -> None:
        order.append(f"{message['type']}:{message.get('more_body', False)}")

    middleware = resilience_asgi.IdempotencyMiddleware(app, store=Store())
    asyncio.run(middleware(_scope(), receive, send))
    assert order == [
        "http.response.start:False",
        "http.response.body:True",
        "stored",
        "http.response.body:False",
    ]


# -- #12 item 4: a completion whose claim was lost is logged and emitted ----------------------


def _steal(middleware: Any, store: MemoryStore, credential: str) -> None:
    """Another request takes the key, as if the first one's lease had run out."""
    record = middleware.rules.screen([KEY], None, credential)
    store._records.clear()
    assert store.idempotency_claim(record, "another payload", 30.0).outcome == "claimed"


def test_asgi_a_lost_claim_is_logged_and_emitted(caplog: pytest.LogCaptureFixture) -> None:
    """The ASGI shell's completion is refused (another request holds the key): a warning and
    an ``IdempotencyClaimLost`` event say so."""
    store = MemoryStore()

    async def scenario() -> None:
        entered, proceed = asyncio.Event(), asyncio.Event()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            entered.set()
            await proceed.wait()
            await send({"type": "http.response.start", "status": 201, "headers": []})
            await send({"type": "http.response.body", "body": b"done"})

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"{}"}

        async def send(message: Any) -> None:
            return None

        middleware = resilience_asgi.IdempotencyMiddleware(app, store=store)
        task = asyncio.create_task(middleware(_scope(), receive, send))
        await entered.wait()
        _steal(middleware, store, "Bearer a")
        proceed.set()
        await task

    with EventRecorder() as recorder, caplog.at_level(logging.WARNING, "resilience"):
        asyncio.run(scenario())
    assert recorder.of(IdempotencyClaimLost) == [IdempotencyClaimLost("idempotency", "complete")]
    assert "claim was lost" in caplog.text


def test_wsgi_a_lost_claim_is_logged_and_emitted(caplog: pytest.LogCaptureFixture) -> None:
    """The WSGI shell's completion is refused the same way, and says so the same way."""
    store = MemoryStore()
    entered, proceed = threading.Event(), threading.Event()

    def app(environ: Any, start_response: Any) -> list[bytes]:
        entered.set()
        assert proceed.wait(10)
        start_response("201 Created", [])
        return [b"done"]

    middleware = resilience_wsgi.IdempotencyMiddleware(app, store=store)
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/charges",
        "HTTP_IDEMPOTENCY_KEY": KEY,
        "HTTP_AUTHORIZATION": "Bearer a",
        "CONTENT_LENGTH": "2",
        "wsgi.input": __import__("io").BytesIO(b"{}"),
    }
    body: list[bytes] = []
    with EventRecorder() as recorder, caplog.at_level(logging.WARNING, "resilience"):
        worker = threading.Thread(
            target=lambda: body.extend(middleware(environ, lambda *args: None))
        )
        worker.start()
        assert entered.wait(10)
        _steal(middleware, store, "Bearer a")
        proceed.set()
        worker.join(10)
    assert body == [b"done"]
    assert recorder.of(IdempotencyClaimLost) == [IdempotencyClaimLost("idempotency", "complete")]
    assert "claim was lost" in caplog.text


# -- #16 item 3: stores and the idempotency rules do not import each other ------------------


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_stores_and_the_idempotency_rules_import_one_way() -> None:
    """No store imports ``resilience._idempotency`` (``Claim`` lives in ``stores``), and the
    sans-IO rules import no store: the old cycle is gone."""
    for path in (ROOT / "resilience" / "stores").glob("*.py"):
        assert not any(name.startswith("resilience._idempotency") for name in _imports(path)), path
    for path in (ROOT / "resilience" / "_idempotency").glob("*.py"):
        if path.name != "policy.py":  # the policy (layer 4) holds a store; the rules do not
            assert not any(name.startswith("resilience.stores") for name in _imports(path)), path
