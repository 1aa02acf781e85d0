"""RetryBudget shared on a real redis-server: a fleet spends one budget."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resilience import Backoff, Retry, RetryBudget, StoreRecovered, StoreUnavailable
from resilience.stores import MemoryStore, RedisStore
from resilience.testing import EventRecorder
from tests.redis_server import RedisServer, record_commands

pytestmark = pytest.mark.usefixtures("close_redis_clients")


def budget(server: RedisServer, name: str = "api", **options: Any) -> RetryBudget:
    """A budget on its own connection, as one replica of a fleet would have."""
    on_error = options.pop("on_error", "allow")
    options.setdefault("min_retries_per_second", 0.0)
    return RetryBudget(name=name, store=RedisStore(server.client(), on_error=on_error), **options)


def test_two_instances_share_spending(redis_server: RedisServer) -> None:
    """A reserve of 2 retries is spent once across two replicas, not once per replica."""
    one = budget(redis_server, ratio=0.0, min_retries_per_second=0.2, window=10.0)
    two = budget(redis_server, ratio=0.0, min_retries_per_second=0.2, window=10.0)
    assert one.available() == two.available() == 2
    assert [one.try_spend(), two.try_spend(), one.try_spend(), two.try_spend()] == [
        True,
        True,
        False,
        False,
    ]
    assert one.available() == two.available() == 0


def test_first_attempts_anywhere_earn_retries_everywhere(redis_server: RedisServer) -> None:
    """Ratio 0.5: four first attempts on one replica earn two retries on the other."""
    one, two = budget(redis_server, ratio=0.5), budget(redis_server, ratio=0.5)
    for _ in range(4):
        one.record_attempt()
    assert two.available() == 2
    assert [two.try_spend() for _ in range(3)] == [True, True, False]


def test_retry_policies_on_two_replicas_share_the_budget(redis_server: RedisServer) -> None:
    """Two Retry policies (two replicas) with a shared reserve of one retry: only one of them
    retries."""
    attempts = []

    def failing(replica: str) -> None:
        attempts.append(replica)
        raise ConnectionError("down")

    for replica in ("a", "b"):
        shared = budget(redis_server, ratio=0.0, min_retries_per_second=0.1, window=10.0)
        retry = Retry(attempts=3, budget=shared, backoff=Backoff(initial=0.0, maximum=0.0))
        with pytest.raises(ConnectionError):
            retry(failing)(replica)
    assert attempts == ["a", "a", "b"]


def test_different_names_never_share_and_keys_expire(redis_server: RedisServer) -> None:
    """Budgets with different names are independent; their keys are hash-tagged with TTLs."""
    client: Any = redis_server.client()
    store = RedisStore(client, prefix="svc:")
    a = RetryBudget(0.0, 0.1, 10.0, name="a", store=store)
    b = RetryBudget(0.0, 0.1, 10.0, name="b", store=store)
    assert a.try_spend()
    assert not a.try_spend()
    assert b.try_spend()
    assert sorted(client.keys("*")) == [b"svc:{a}:budget", b"svc:{b}:budget"]
    assert 0 < client.pttl("svc:{a}:budget") <= 11_000 + 60_000


def test_replace_shares_under_the_same_name(redis_server: RedisServer) -> None:
    """replace keeps the store: the copy spends the original's budget (or its own, renamed)."""
    original = budget(redis_server, ratio=0.0, min_retries_per_second=0.1, window=10.0)
    assert original.replace().try_spend()
    assert not original.try_spend()
    assert original.replace(name="other").try_spend()


def test_steps_send_bytes_encoded_once(redis_server: RedisServer) -> None:
    """What a step sends, exactly: the hash-tagged key and the settings encoded once, when the
    budget is built (redis-py would encode every str again on every call), the op as bytes."""
    client: Any = redis_server.client()
    sent = record_commands(client)
    shared = RetryBudget(0.5, 0.2, 10.0, name="api", store=RedisStore(client, prefix="svc:"))
    shared.record_attempt()  # the script is loaded
    sent.clear()
    shared.record_attempt()
    assert shared.try_spend()
    assert shared.available() == 2
    assert [args[0] for args in sent] == ["EVALSHA"] * 3
    assert all(type(arg) is bytes for args in sent for arg in args[1:])
    # op, now ("": Redis TIME), window_ms, slices, ratio, reserve, ttl_ms
    constants = (b"", b"10000.0", b"10", b"0.5", b"2.0", b"71000")
    assert [args[2:] for args in sent] == [
        (b"1", b"svc:{api}:budget", op, *constants) for op in (b"a", b"s", b"v")
    ]
    assert all(args[3] is sent[0][3] and args[6] is sent[0][6] for args in sent)


def test_outage_allows_retries_with_one_event(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis killed: no RedisError; on_error="allow" lets retries through, with one event and
    one warning; restarted: StoreRecovered and the shared budget again."""
    one = budget(redis_server, ratio=0.0, min_retries_per_second=0.1, window=10.0)
    assert one.try_spend()
    redis_server.stop()
    with EventRecorder() as recorder, caplog.at_level(logging.WARNING, logger="resilience"):
        one.record_attempt()
        assert [one.try_spend() for _ in range(3)] == [True] * 3
        assert one.available() == 1  # the floor: min_retries_per_second * window
        redis_server.start()
        assert [one.try_spend() for _ in range(2)] == [True, False]
    events = recorder.of(StoreUnavailable) + recorder.of(StoreRecovered)
    assert [type(e) for e in events] == [StoreUnavailable, StoreRecovered]
    unavailable = recorder.of(StoreUnavailable)[0]
    assert (unavailable.policy, unavailable.fallback) == ("api", "allow")
    assert len([r for r in caplog.records if "unavailable" in r.getMessage()]) == 1


def test_outage_with_deny_refuses_retries(redis_server: RedisServer) -> None:
    """on_error="deny": while Redis is unreachable no retry is spent."""
    one = budget(redis_server, ratio=1.0, min_retries_per_second=10.0, on_error="deny")
    redis_server.stop()
    assert not one.try_spend()
    assert one.available() == 0


def test_bad_store_and_name_fail_at_construction(redis_server: RedisServer) -> None:
    """A store that is no store or an empty name fails naming the parameter; a budget on an
    async client refuses sync use, and a sync function, at once."""
    with pytest.raises(TypeError, match="store must be a MemoryStore, a RedisStore or None"):
        RetryBudget(name="b", store=object())
    client: Any = redis_server.async_client()
    on_async = RetryBudget(name="b", store=RedisStore(client))
    with pytest.raises(TypeError, match=r"redis\.asyncio"):
        on_async.try_spend()
    with pytest.raises(TypeError, match="coroutine functions only"):
        Retry(3, budget=on_async)(succeed_sync)
    asyncio.run(client.aclose())
    with pytest.raises(ValueError, match="name"):
        RetryBudget(name="")
    assert RetryBudget(store=MemoryStore()).try_spend()


# Times at half milliseconds: never on a slice edge, where seconds and milliseconds could
# round apart (0.3 / 0.1 < 3 but 300 / 100 == 3).
steps = st.lists(
    st.tuples(st.integers(0, 400), st.sampled_from(["a", "s", "v"])), min_size=1, max_size=60
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=steps, ratio=st.sampled_from([0.0, 0.1, 0.29, 0.5, 1.0]))
def test_lua_budget_matches_the_memory_budget(
    redis_server: RedisServer, steps: list[tuple[int, str]], ratio: float
) -> None:
    """On any sequence of attempts, spends and peeks (times pinned), the Redis script decides
    and counts exactly as the in-memory budget."""
    client: Any = redis_server.client()
    client.flushall()
    memory = RetryBudget(ratio, 0.3, 1.0)
    shared = RetryBudget(ratio, 0.3, 1.0, name="model", store=RedisStore(client))
    now_ms = 1_000_000.5
    for delay, op in steps:
        now_ms += delay
        reply = shared._store.run(
            shared._script, shared._keys, [op, repr(now_ms), *shared._args], "budget", "model"
        )
        spent, allowance = (int(part) for part in reply.split())
        now = now_ms / 1000.0
        if op == "a":
            memory.record_attempt(now)
        elif op == "s":
            assert bool(spent) == memory.try_spend(now)
        assert max(0, allowance) == memory.available(now)


def test_transports_share_a_budget_per_origin(redis_server: RedisServer, http_server: Any) -> None:
    """Two replicas' transports on one Redis spend one budget per origin: what one replica
    spent on a host is gone for the other; another host's budget is untouched."""
    import httpx

    from resilience.http import ResilientTransport
    from tests.http_server import Reply, dead_origin

    def replica() -> httpx.Client:
        shared = budget(redis_server, "http", ratio=0.0, min_retries_per_second=0.1)
        retry = Retry(3, backoff=Backoff(initial=0.001, maximum=0.002), budget=shared)
        return httpx.Client(transport=ResilientTransport(retry=retry, tracing=False))

    http_server.script("/r", [Reply(503)])
    with replica() as first, replica() as second:
        first.get(f"{http_server.url}/r")
        assert len(http_server.received("/r")) == 2  # one retry: the fleet's budget for it
        second.get(f"{http_server.url}/r")
        assert len(http_server.received("/r")) == 3  # none left for this origin
        with pytest.raises(httpx.ConnectError) as caught:
            second.get(f"{dead_origin()}/r")
    assert "attempt 2 of 3" in "".join(caught.value.__notes__)  # another origin's budget


def succeed_sync() -> str:
    return "ok"


def test_async_client_budget_is_shared_by_coroutines(redis_server: RedisServer) -> None:
    """On redis.asyncio, Retry around coroutines records attempts and spends retries through
    the shared budget: one replica's spending is gone for the other."""

    async def scenario() -> tuple[list[str], int, int]:
        clients: list[Any] = [redis_server.async_client() for _ in range(2)]
        try:
            budgets = [
                RetryBudget(ratio=0.0, min_retries_per_second=0.2, name="aio", store=RedisStore(c))
                for c in clients
            ]  # two retries for the whole fleet
            failures = 0

            async def flaky() -> str:
                nonlocal failures
                failures += 1
                raise ConnectionError("blip")

            outcomes = []
            for replica in (0, 1, 0, 1):
                retry = Retry(3, backoff=Backoff(0.0, 0.0), budget=budgets[replica])
                try:
                    await retry(flaky)()
                except ConnectionError as exc:
                    outcomes.append("".join(getattr(exc, "__notes__", [])))
            left = await budgets[1].available_async()
            return outcomes, failures, left
        finally:
            for c in clients:
                await c.aclose()

    outcomes, failures, left = asyncio.run(scenario())
    assert failures == 4 + 2  # four first attempts, and the fleet's two retries
    assert left == 0
    assert "attempts exhausted" in outcomes[0]  # replica 0 spent the fleet's two retries
    assert all("retry budget spent" in note for note in outcomes[1:])  # both replicas refused
