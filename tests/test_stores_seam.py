"""The store seam: every policy that takes ``store=`` checks, at construction, that the store
offers the steps it will run (``resilience.stores``' protocols), naming ``store`` and what it
must offer; stores that implement a protocol without being ours are accepted."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable, Sequence
from typing import Any

import pytest

import resilience
from resilience import CircuitBreaker, CircuitState, RateLimiter, RetryBudget
from resilience._gcra import GcraParams, RateLimitDecision
from resilience.asgi import IdempotencyMiddleware as AsgiIdempotency
from resilience.stores import MemoryStore, RedisStore
from resilience.testing import FakeClock
from resilience.wsgi import IdempotencyMiddleware as WsgiIdempotency
from tests.redis_server import RedisServer

NOT_STORES = [object(), "redis://127.0.0.1:6379/0", 42]


async def _asgi_app(scope: Any, receive: Any, send: Any) -> None:  # never called
    raise AssertionError


def _wsgi_app(environ: Any, start_response: Any) -> list[bytes]:  # never called
    raise AssertionError


# Each policy taking store=, built unnamed (the store must be refused before the name is asked
# for) and named; and the words its refusal must say.
BUILDERS: list[tuple[str, Callable[[Any, str | None], object], str]] = [
    ("rate_limiter", lambda store, name: RateLimiter(5, name=name, store=store), "gcra"),
    ("breaker", lambda store, name: CircuitBreaker(name, store=store), "ScriptStore"),
    ("budget", lambda store, name: RetryBudget(name=name, store=store), "ScriptStore"),
    (
        "asgi_idempotency",
        lambda store, name: AsgiIdempotency(_asgi_app, store=store, name=name),
        "idempotency",
    ),
    (
        "wsgi_idempotency",
        lambda store, name: WsgiIdempotency(_wsgi_app, store=store, name=name),
        "idempotency",
    ),
]


@pytest.mark.parametrize("name", [None, "x"])
@pytest.mark.parametrize("bad", NOT_STORES, ids=["object", "url", "int"])
@pytest.mark.parametrize(
    ("build", "offers"), [b[1:] for b in BUILDERS], ids=[b[0] for b in BUILDERS]
)
def test_a_store_that_is_no_store_fails_at_construction(
    build: Callable[[Any, str | None], object], offers: str, bad: object, name: str | None
) -> None:
    """Something that is no store (an object, a Redis URL) is refused at construction with a
    message naming ``store``, what it must offer and the value given: not an AttributeError
    at the first call, and not a complaint about the name."""
    with pytest.raises(TypeError, match=r"^store must") as caught:
        build(bad, name)
    assert offers in str(caught.value)
    assert repr(bad) in str(caught.value)


def test_the_rate_limiter_refusal_says_what_a_store_must_offer() -> None:
    """The limiter's message lists the steps and the stores that offer them."""
    with pytest.raises(TypeError) as caught:
        RateLimiter(5, name="x", store="redis://127.0.0.1:6379/0")
    assert str(caught.value) == (
        "store must offer gcra and gcra_admit or their async twins (a MemoryStore, a "
        "RedisStore or a GcraStore), got 'redis://127.0.0.1:6379/0'"
    )


# -- stores of our own making: the protocols, not our classes ------------------------------------


class SyncGcra:
    """A third-party store offering the sync GCRA steps only (it delegates to a MemoryStore)."""

    def __init__(self, clock: FakeClock) -> None:
        self._inner = MemoryStore(clock=clock)

    def gcra(self, key: str, params: GcraParams, cost: int, max_wait: float) -> RateLimitDecision:
        return self._inner.gcra(key, params, cost, max_wait)

    def gcra_admit(self, key: str, params: GcraParams, cost: int, max_wait: float) -> float:
        return self._inner.gcra_admit(key, params, cost, max_wait)


class AsyncGcra:
    """A third-party store offering the async GCRA steps only."""

    def __init__(self, clock: FakeClock) -> None:
        self._inner = MemoryStore(clock=clock)

    async def gcra_async(
        self, key: str, params: GcraParams, cost: int, max_wait: float
    ) -> RateLimitDecision:
        return await self._inner.gcra_async(key, params, cost, max_wait)

    async def gcra_admit_async(
        self, key: str, params: GcraParams, cost: int, max_wait: float
    ) -> float:
        return await self._inner.gcra_admit_async(key, params, cost, max_wait)


def test_a_third_party_gcra_store_serves_a_limiter() -> None:
    """A store that is not ours but offers the GCRA steps runs the limit: two admitted, the
    third refused, through acquire, try_acquire and the decorator."""
    limiter = RateLimiter(1, per=60.0, burst=1, name="x", store=SyncGcra(FakeClock()))
    assert limiter.try_acquire().allowed
    assert limiter(lambda: "ran")() == "ran"
    assert not limiter.try_acquire().allowed
    with pytest.raises(resilience.RateLimitedError):
        limiter(lambda: "ran")()

    async_limiter = RateLimiter(1, per=60.0, burst=1, name="x", store=AsyncGcra(FakeClock()))

    async def ran() -> str:
        return "ran"

    async def run() -> None:
        assert (await async_limiter.try_acquire_async()).allowed
        assert await async_limiter(ran)() == "ran"
        with pytest.raises(resilience.RateLimitedError):
            await async_limiter(ran)()

    asyncio.run(run())


def test_a_store_of_one_colour_is_refused_in_the_other_naming_store() -> None:
    """A store with only sync steps cannot serve coroutines (and the reverse): decorating
    refuses at once, and acquire refuses with a TypeError naming store, not an
    AttributeError from inside the limiter."""
    sync_only = RateLimiter(5, name="x", store=SyncGcra(FakeClock()))

    async def coroutine() -> None:
        return None

    with pytest.raises(TypeError, match=r"^store: rate limiter 'x'.*coroutines.*gcra_admit_async"):
        sync_only(coroutine)
    with pytest.raises(TypeError, match=r"^store: rate limiter 'x'.*coroutines"):
        asyncio.run(sync_only.acquire_async())
    async_only = RateLimiter(5, name="y", store=AsyncGcra(FakeClock()))
    with pytest.raises(TypeError, match=r"^store: rate limiter 'y'.*sync code.*gcra_admit"):
        async_only(lambda: None)
    with pytest.raises(TypeError, match=r"^store: rate limiter 'y'.*sync code"):
        async_only.try_acquire()


def test_a_redis_store_of_one_colour_is_refused_in_the_other() -> None:
    """A RedisStore over redis.Redis cannot serve coroutines, nor one over redis.asyncio sync
    code: the limiter says so when decorating or acquiring (no I/O: nothing is sent)."""
    redis = pytest.importorskip("redis")
    on_sync = RateLimiter(5, name="s", store=RedisStore(redis.Redis(host="127.0.0.1", port=1)))

    async def coroutine() -> None:
        return None

    with pytest.raises(TypeError, match=r"^store: rate limiter 's'.*redis\.asyncio"):
        on_sync(coroutine)
    client = redis.asyncio.Redis(host="127.0.0.1", port=1)
    on_async = RateLimiter(5, name="a", store=RedisStore(client))
    with pytest.raises(TypeError, match=r"^store: rate limiter 'a'.*redis\.Redis"):
        on_async(lambda: None)
    with pytest.raises(TypeError, match=r"^store: rate limiter 'a'.*redis\.Redis"):
        on_async.acquire()


class Scripts:
    """A third-party ScriptStore: runs the shared steps through a RedisStore it wraps (as a
    store adding its own metrics or client handling would), without being one."""

    def __init__(self, inner: RedisStore, on_error: str = "allow") -> None:
        self._inner = inner
        self._on_error = on_error
        self.runs = 0

    @property
    def is_async(self) -> bool:
        return self._inner.is_async

    @property
    def on_error(self) -> str:
        return self._on_error

    def key(self, name: str, kind: str) -> str:
        return self._inner.key(name, kind)

    def script(self, name: str) -> Any:
        return self._inner.script(name)

    def run(
        self, script: Any, keys: Sequence[str | bytes], args: Sequence[Any], kind: str, name: str
    ) -> Any:
        self.runs += 1
        return self._inner.run(script, keys, args, kind, name)

    async def run_async(
        self, script: Any, keys: Sequence[str | bytes], args: Sequence[Any], kind: str, name: str
    ) -> Any:
        self.runs += 1
        return await self._inner.run_async(script, keys, args, kind, name)


def _fail() -> None:
    raise RuntimeError("down")


@pytest.mark.redis
def test_a_third_party_script_store_shares_a_breaker(redis_server: RedisServer) -> None:
    """A breaker on a ScriptStore that is not a RedisStore shares its state with replicas on a
    RedisStore under the same name: one opens it, the other sees it open."""
    ours = Scripts(RedisStore(redis_server.client()))
    one = CircuitBreaker("payments", minimum_calls=1, store=ours)
    two = CircuitBreaker("payments", minimum_calls=1, store=RedisStore(redis_server.client()))
    with pytest.raises(RuntimeError):
        one(_fail)()
    assert two.state is CircuitState.OPEN
    assert ours.runs >= 1


@pytest.mark.redis
def test_a_third_party_script_store_shares_a_budget(redis_server: RedisServer) -> None:
    """A budget on a ScriptStore spends from the same counters as one on a RedisStore."""
    ours = Scripts(RedisStore(redis_server.client()))
    options: dict[str, Any] = {"ratio": 0.0, "min_retries_per_second": 0.1, "window": 10.0}
    one = RetryBudget(name="api", store=ours, **options)
    two = RetryBudget(name="api", store=RedisStore(redis_server.client()), **options)
    assert one.try_spend()  # the floor's one retry
    assert not two.try_spend()
    assert ours.runs >= 1


@pytest.mark.parametrize(
    "build",
    [
        lambda store: CircuitBreaker("x", store=store),
        lambda store: RetryBudget(name="x", store=store),
    ],
    ids=["breaker", "budget"],
)
def test_a_script_store_with_an_unknown_on_error_is_refused(
    build: Callable[[Any], object],
) -> None:
    """The policies act on the store's on_error while it is down: a value they do not know
    ("Allow") is refused at construction rather than read as "deny" in the next outage."""
    redis = pytest.importorskip("redis")
    store = Scripts(RedisStore(redis.Redis(host="127.0.0.1", port=1)), on_error="Allow")
    with pytest.raises(
        ValueError, match=r"^store\.on_error must be 'allow' or 'deny', got 'Allow'"
    ):
        build(store)


# -- idempotency records are named on a shared store -------------------------------------------


def _post(app: Any, authorization: str, body: bytes) -> tuple[str, bytes]:
    """One keyed POST through a WSGI app, called directly: (status, body)."""
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/charges",
        "QUERY_STRING": "",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "HTTP_IDEMPOTENCY_KEY": '"order-17"',
        "HTTP_AUTHORIZATION": authorization,
    }
    said: list[str] = []
    chunks = app(environ, lambda status, headers, exc_info=None: said.append(status))
    return said[0], b"".join(chunks)


def _service(answer: bytes, ran: list[bytes]) -> Any:
    def app(environ: Any, start_response: Any) -> list[bytes]:
        ran.append(answer)
        start_response("201 Created", [("Content-Type", "application/json")])
        return [answer]

    return app


@pytest.mark.redis
def test_two_named_services_on_one_redis_keep_apart(redis_server: RedisServer) -> None:
    """Two services on one Redis, the same caller and the same key: each runs its own handler
    and answers its own response; under one name the second would have replayed the first's."""
    ran: list[bytes] = []
    orders = WsgiIdempotency(
        _service(b"orders", ran), store=RedisStore(redis_server.client()), name="orders"
    )
    billing = WsgiIdempotency(
        _service(b"billing", ran), store=RedisStore(redis_server.client()), name="billing"
    )
    assert _post(orders, "Bearer alice", b"{}") == ("201 Created", b"orders")
    assert _post(billing, "Bearer alice", b"{}") == ("201 Created", b"billing")
    assert ran == [b"orders", b"billing"]
    same_name = WsgiIdempotency(
        _service(b"other", ran), store=RedisStore(redis_server.client()), name="orders"
    )
    assert _post(same_name, "Bearer alice", b"{}") == ("201 Created", b"orders")  # a replay
    assert ran == [b"orders", b"billing"]
