"""RateLimitMiddleware (ASGI on uvicorn, WSGI on threaded wsgiref, both on 127.0.0.1): per-caller
limits, 429 with Retry-After, and the RateLimit header fields on every answer."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from resilience import RateLimited, RateLimiter
from resilience import asgi as resilience_asgi
from resilience import wsgi as resilience_wsgi
from resilience._client_address import ClientAddress
from resilience._gcra import RateLimitDecision
from resilience._ratelimit_http import LimitHeaders
from resilience.stores import RedisStore
from resilience.testing import EventRecorder, FakeClock, serve_asgi, serve_wsgi
from tests.redis_server import RedisServer


async def hello_asgi(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-app", b"hi")]})
    await send({"type": "http.response.body", "body": b"hello"})


def hello_wsgi(environ: Any, start_response: Any) -> list[bytes]:
    start_response("200 OK", [("X-App", "hi")])
    return [b"hello"]


@pytest.fixture(params=[pytest.param(k, marks=pytest.mark.server) for k in ("asgi", "wsgi")])
def served(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[str]:
    """2 requests per minute per caller (burst 1: two at once), callers told by X-Client."""
    limiter = RateLimiter(2, per=60.0, burst=1, name="api", clock=clock)
    if request.param == "asgi":

        def caller(scope: Any) -> str | None:
            return dict(scope["headers"]).get(b"x-client", b"").decode() or None

        app: Any = resilience_asgi.RateLimitMiddleware(
            hello_asgi, limiter, partition=caller, policy="per-client"
        )
        with serve_asgi(app) as url:
            yield url
    else:
        app = resilience_wsgi.RateLimitMiddleware(
            hello_wsgi,
            limiter,
            partition=lambda environ: environ.get("HTTP_X_CLIENT"),
            policy="per-client",
        )
        with serve_wsgi(app) as url:
            yield url


def get(url: str, client: str) -> httpx.Response:
    return httpx.get(url, headers={"X-Client": client})


def test_each_caller_gets_its_own_limit_with_header_fields(served: str) -> None:
    """Two requests pass with r=1 then r=0; the third gets 429 + Retry-After (30 s: one
    emission interval) without reaching the app; another caller is not affected."""
    with EventRecorder() as recorder:
        first, second, third = (get(served, "alice") for _ in range(3))
        other = get(served, "bob")
    assert [r.status_code for r in (first, second, third, other)] == [200, 200, 429, 200]
    assert first.text == "hello" and first.headers["x-app"] == "hi"
    assert first.headers["ratelimit-policy"] == '"per-client";q=2;w=60'
    assert first.headers["ratelimit"] == '"per-client";r=1;t=30'
    assert second.headers["ratelimit"] == '"per-client";r=0;t=60'
    assert third.headers["retry-after"] == "30"
    assert third.headers["ratelimit"] == '"per-client";r=0;t=30'
    assert third.headers["content-type"] == "application/problem+json"
    assert third.json()["status"] == 429 and "x-app" not in third.headers
    assert other.headers["ratelimit"] == '"per-client";r=1;t=30'
    assert [event.retry_after for event in recorder.of(RateLimited)] == [30.0]


def test_bad_configuration_names_the_parameter(clock: FakeClock) -> None:
    limiter = RateLimiter(1, clock=clock)
    with pytest.raises(ValueError, match="policy"):
        resilience_asgi.RateLimitMiddleware(hello_asgi, limiter, policy='a"b')
    with pytest.raises(TypeError, match="limiter"):
        resilience_wsgi.RateLimitMiddleware(hello_wsgi, "10/s")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cost"):
        resilience_wsgi.RateLimitMiddleware(hello_wsgi, limiter, cost=5)
    with pytest.raises(TypeError, match="partition"):
        resilience_asgi.RateLimitMiddleware(hello_asgi, limiter, partition="ip")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="partition"):
        limiter.try_acquire(partition="")


def test_headers_follow_the_decision() -> None:
    """q is the burst, w the time it takes to drain; t rounds up."""
    rules = LimitHeaders(RateLimiter(10, per=1.0, burst=4), "api")
    allowed = RateLimitDecision(True, 5, 3, 0.0, 0.21)
    assert rules.headers(allowed) == [
        (b"ratelimit-policy", b'"api";q=5;w=1'),
        (b"ratelimit", b'"api";r=3;t=1'),
    ]
    refused = rules.refused(RateLimitDecision(False, 5, 0, 0.05, 0.5), "GET", "/")
    assert refused.status == 429
    assert (b"retry-after", b"1") in refused.headers  # at least one second


# -- who is a caller: the peer address by default (#12 item 9) -----------------------------

PEER_A, PEER_B, PROXY = "127.0.0.2", "127.0.0.3", "127.0.0.4"


def get_from(url: str, source: str, **headers: str) -> httpx.Response:
    """A GET sent from the loopback address ``source`` (Linux routes all of 127/8 to lo)."""
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport) as client:
        return client.get(url, headers=headers)


@contextmanager
def serving(kind: str, limiter: RateLimiter, **options: Any) -> Iterator[str]:
    """``hello`` behind a RateLimitMiddleware on uvicorn (asgi) or threaded wsgiref (wsgi)."""
    if kind == "asgi":
        with serve_asgi(resilience_asgi.RateLimitMiddleware(hello_asgi, limiter, **options)) as url:
            yield url
    else:
        with serve_wsgi(resilience_wsgi.RateLimitMiddleware(hello_wsgi, limiter, **options)) as url:
            yield url


@pytest.mark.server
@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_callers_are_partitioned_by_peer_address_by_default(kind: str, clock: FakeClock) -> None:
    """One client spending its quota does not refuse another: with no partition given, each
    peer address has its own bucket."""
    limiter = RateLimiter(1, per=60.0, name="api", clock=clock)
    with serving(kind, limiter) as url:
        statuses = [get_from(url, PEER_A).status_code for _ in range(2)]
        other = get_from(url, PEER_B)
    assert statuses == [200, 429]
    assert other.status_code == 200


@pytest.mark.server
@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_callers_a_partition_cannot_place_fall_back_to_their_address(
    kind: str, clock: FakeClock
) -> None:
    """partition= answers None for requests without an API key: those callers are told apart
    by address, not thrown into one bucket that one of them could spend for all."""
    limiter = RateLimiter(1, per=60.0, name="api", clock=clock)

    def api_key(request: Any) -> str | None:
        if kind == "asgi":
            return dict(request["headers"]).get(b"x-api-key", b"").decode() or None
        return request.get("HTTP_X_API_KEY")  # type: ignore[no-any-return]

    with serving(kind, limiter, partition=api_key) as url:
        keyless = [get_from(url, peer).status_code for peer in (PEER_A, PEER_A, PEER_B)]
        keyed = [get_from(url, PEER_A, **{"X-Api-Key": "k1"}).status_code for _ in range(2)]
    assert keyless == [200, 429, 200]
    assert keyed == [200, 429]


@pytest.mark.server
@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_a_global_limit_is_an_explicit_choice(kind: str, clock: FakeClock) -> None:
    """shared=True puts every caller in one bucket."""
    limiter = RateLimiter(1, per=60.0, name="api", clock=clock)
    with serving(kind, limiter, shared=True) as url:
        statuses = [get_from(url, peer).status_code for peer in (PEER_A, PEER_B)]
    assert statuses == [200, 429]


@pytest.mark.server
@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_a_proxy_header_is_believed_only_from_trusted_proxies(kind: str, clock: FakeClock) -> None:
    """From a trusted proxy, X-Forwarded-For names the caller (its rightmost untrusted entry,
    so a client-written entry to its left changes nothing); from anyone else the header is
    ignored and the peer address counts."""
    limiter = RateLimiter(1, per=60.0, name="api", clock=clock)
    options = {"trusted_proxies": [PROXY], "client_header": "X-Forwarded-For"}
    with serving(kind, limiter, **options) as url:
        spoofed = [
            get_from(url, PEER_A, **{"X-Forwarded-For": f"10.0.0.{n}"}).status_code for n in (1, 2)
        ]
        proxied = [
            get_from(url, PROXY, **{"X-Forwarded-For": forwarded}).status_code
            for forwarded in ("10.0.0.1", "10.0.0.2", "6.6.6.6, 10.0.0.1")
        ]
    assert spoofed == [200, 429]  # one peer, one bucket, whatever it claims
    assert proxied == [200, 200, 429]


def test_client_addresses_are_canonical_and_grouped() -> None:
    """IPv6 callers share a bucket per /64; proxies' address forms (ports, brackets,
    IPv4-mapped) are understood; a malformed header entry makes the peer count; a request
    with no peer address is "unknown"."""
    address = ClientAddress(trusted_proxies=["10.0.0.0/8", "::1"], client_header="X-Real-IP")
    assert address.of("2001:db8::1", None) == address.of("2001:db8::ffff", None)
    assert address.of("2001:db8::1", None) == "2001:db8::/64"
    assert address.of("2001:db8:0:1::1", None) != address.of("2001:db8::1", None)
    assert address.of("10.1.2.3", "[2001:db8::7]:443") == "2001:db8::/64"
    assert address.of("10.1.2.3", "192.0.2.7:5555") == "192.0.2.7"
    assert address.of("::1", "::ffff:192.0.2.8") == "192.0.2.8"
    assert address.of("10.1.2.3", "not-an-address") == "10.1.2.3"
    assert address.of("192.0.2.9", "192.0.2.10") == "192.0.2.9"  # not a proxy: ignored
    assert address.of("10.1.2.3", "10.4.4.4, 10.5.5.5") == "10.4.4.4"  # all hops ours
    assert address.of(None, "192.0.2.10") == "unknown"
    assert ClientAddress(ipv6_prefix=128).of("2001:db8::1", None) == "2001:db8::1"


def test_requests_without_a_peer_address_share_a_bucket_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server on a Unix socket gives no peer address: those requests are "unknown" (one
    bucket), and the operator is told once to pass partition=."""
    address = ClientAddress()
    with caplog.at_level(logging.WARNING, logger="resilience"):
        assert [address.of(peer, None) for peer in (None, "", None)] == ["unknown"] * 3
    (record,) = caplog.records
    assert "partition=" in record.getMessage()


def test_partitioning_options_are_checked_at_construction(clock: FakeClock) -> None:
    """A header without proxies (anybody could write it), proxies that are not addresses, a
    shared limit with a partition or with proxy options fail at construction, naming the
    parameter."""
    limiter = RateLimiter(1, clock=clock)
    make = resilience_asgi.RateLimitMiddleware
    with pytest.raises(ValueError, match="client_header and trusted_proxies"):
        make(hello_asgi, limiter, client_header="X-Forwarded-For")
    with pytest.raises(ValueError, match="trusted_proxies"):
        make(hello_asgi, limiter, trusted_proxies=["proxy.local"], client_header="X-Real-IP")
    with pytest.raises(TypeError, match="trusted_proxies"):
        make(hello_asgi, limiter, trusted_proxies="10.0.0.1", client_header="X-Real-IP")
    with pytest.raises(ValueError, match="client_header"):
        make(hello_asgi, limiter, trusted_proxies=["10.0.0.1"], client_header="X Real IP")
    with pytest.raises(ValueError, match="shared"):
        resilience_wsgi.RateLimitMiddleware(hello_wsgi, limiter, shared=True, partition=str)
    with pytest.raises(ValueError, match="client_header"):
        resilience_wsgi.RateLimitMiddleware(
            hello_wsgi, limiter, shared=True, trusted_proxies=["10.0.0.1"], client_header="X-A"
        )
    with pytest.raises(ValueError, match="ipv6_prefix"):
        make(hello_asgi, limiter, ipv6_prefix=0)


# -- what a refusal says, and that it is logged (#12 item 17) -------------------------------


@pytest.mark.server
@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_t_is_not_one_off_from_float_rounding(kind: str) -> None:
    """Ten requests to RateLimiter(10) at a clock of 1000 s: the quota is whole again in one
    second, and t says 1 (the TAT's float sum made it 1.0000000000002, which rounded up to 2)."""
    limiter = RateLimiter(10, name="api", clock=FakeClock(start=1000.0))
    with serving(kind, limiter) as url:
        last = [get_from(url, PEER_A) for _ in range(10)][-1]
    assert last.headers["ratelimit-policy"] == '"default";q=10;w=1'
    assert last.headers["ratelimit"] == '"default";r=0;t=1'


@pytest.mark.server
@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_the_429_names_the_violated_policy_and_is_logged(
    kind: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The 429 problem carries violated-policies; the refusal is logged on resilience.server
    with no set-up (no instrument()), naming the policy and the path, never the partition (an
    API key here) nor the query string."""
    limiter = RateLimiter(1, per=60.0, name="api", clock=clock)

    def api_key(request: Any) -> str:
        return "sk_live_partition"

    with (
        caplog.at_level(logging.INFO, logger="resilience.server"),
        serving(kind, limiter, partition=api_key, policy="per-key") as url,
    ):
        get_from(f"{url}/orders?token=s3cr3t", PEER_A)
        refused = get_from(f"{url}/orders?token=s3cr3t", PEER_A)
    assert refused.status_code == 429
    assert refused.json()["violated-policies"] == ["per-key"]
    assert refused.json()["type"].endswith("#quota-exceeded")
    (record,) = [r for r in caplog.records if r.name == "resilience.server"]
    assert record.levelno == logging.INFO
    assert record.getMessage() == (
        "GET '/orders' -> 429 rate_limited: rate limit exceeded; retry after 60 s ('per-key')"
    )
    everything = f"{record.getMessage()} {vars(record)}"
    assert "sk_live_partition" not in everything and "s3cr3t" not in everything


def test_the_resilience_logger_has_a_null_handler() -> None:
    """As libraries should: an application that configured no logging does not get our
    records printed on stderr by Python's last-resort handler."""
    code = "import logging, resilience; logging.getLogger('resilience').warning('unseen')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "unseen" not in done.stderr


@pytest.mark.server
def test_a_denying_store_outage_is_a_503_not_a_quota(redis_server: RedisServer) -> None:
    """With on_error="deny" and Redis killed, the answer is 503 with the reduced-capacity
    problem type and Retry-After (the caller exceeded nothing), with no made-up RateLimit
    numbers; ASGI over redis.asyncio on uvicorn."""
    client: Any = redis_server.async_client()
    limiter = RateLimiter(100, name="api", store=RedisStore(client, on_error="deny"))
    with serving("asgi", limiter) as url:
        assert get_from(url, PEER_A).status_code == 200
        redis_server.stop()
        down = get_from(url, PEER_A)
    assert down.status_code == 503
    assert down.json()["type"].endswith("#temporary-reduced-capacity")
    assert down.json()["violated-policies"] == ["default"]
    assert down.headers["retry-after"] == "1"
    assert "ratelimit" not in down.headers and "ratelimit-policy" in down.headers


@pytest.mark.server
def test_a_denying_store_outage_is_a_503_under_wsgi(redis_server: RedisServer) -> None:
    """The same under WSGI over a sync client, on wsgiref; an allowing store passes requests
    without RateLimit numbers it does not have."""
    client: Any = redis_server.client()
    deny = RateLimiter(100, name="deny", store=RedisStore(client, on_error="deny"))
    allow = RateLimiter(100, name="allow", store=RedisStore(client))
    try:
        with serving("wsgi", deny) as denying, serving("wsgi", allow) as allowing:
            redis_server.stop()
            down, passed = get_from(denying, PEER_A), get_from(allowing, PEER_A)
    finally:
        client.close()
    assert down.status_code == 503 and down.headers["retry-after"] == "1"
    assert down.json()["type"].endswith("#temporary-reduced-capacity")
    assert passed.status_code == 200 and "ratelimit" not in passed.headers
