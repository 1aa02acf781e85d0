"""CircuitBreaker shared on a real redis-server: one window and one state for a fleet."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resilience import (
    BulkheadFullError,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    StoreRecovered,
    StoreUnavailable,
    ThrottledError,
)
from resilience._circuit.shared import Permit, SharedCircuit
from resilience._circuit.state import REJECTED, StateMachine
from resilience._circuit.window import CountWindow, OutcomeWindow, TimeWindow
from resilience.stores import MemoryStore, RedisStore
from resilience.testing import EventRecorder, FakeClock
from tests.redis_server import RedisServer, record_commands

pytestmark = pytest.mark.usefixtures("close_redis_clients")


def breaker(server: RedisServer, name: str = "db", **options: Any) -> CircuitBreaker:
    """A breaker on its own connection, as one replica of a fleet would have."""
    options.setdefault("minimum_calls", 2)
    on_error = options.pop("on_error", "allow")
    return CircuitBreaker(name, store=RedisStore(server.client(), on_error=on_error), **options)


def fail() -> None:
    raise RuntimeError("down")


def succeed() -> None:
    pass


def calls(guarded: Any, times: int, *args: Any) -> list[str]:
    """Call ``guarded(*args)`` and note each outcome: ok, failed or rejected."""
    outcomes = []
    for _ in range(times):
        try:
            guarded(*args)
            outcomes.append("ok")
        except CircuitOpenError:
            outcomes.append("rejected")
        except RuntimeError:
            outcomes.append("failed")
    return outcomes


def redis_ms(server: RedisServer) -> float:
    """Redis's own clock, in milliseconds."""
    seconds, micros = server.client().time()  # type: ignore[attr-defined]
    return float(seconds) * 1000.0 + float(micros) / 1000.0


# -- replicas in one process --------------------------------------------------------------------


def test_replicas_share_the_window_and_the_state(redis_server: RedisServer) -> None:
    """A failure on each of two replicas opens the breaker for both; the other rejects
    without calling its function."""
    one, two = breaker(redis_server), breaker(redis_server)
    ran: list[int] = []
    assert calls(one(fail), 1) == ["failed"]
    assert one.state is CircuitState.CLOSED
    assert calls(two(fail), 1) == ["failed"]
    assert one.state is two.state is CircuitState.OPEN
    assert calls(one(ran.append), 2, 1) == ["rejected", "rejected"]
    assert ran == []
    metrics = two.metrics
    assert (metrics.state, metrics.total_failures) == (CircuitState.OPEN, 1)


def test_transition_is_announced_once_by_the_replica_that_made_it(
    redis_server: RedisServer,
) -> None:
    """Only the replica whose record opened the breaker announces CircuitStateChanged."""
    one, two = breaker(redis_server), breaker(redis_server)
    seen: list[tuple[str, str]] = []
    one.add_listener(lambda e: seen.append(("one", e.new)))
    two.add_listener(lambda e: seen.append(("two", e.new)))
    calls(one(fail), 1)
    calls(two(fail), 1)
    calls(one(fail), 3)
    assert seen == [("two", "open")]


def test_half_open_admits_exactly_one_trial_across_replicas(redis_server: RedisServer) -> None:
    """While one replica's trial runs, every other replica (and the owner) is rejected; the
    trial passing closes the breaker for all."""
    replicas = [breaker(redis_server, open_for=0.0) for _ in range(5)]
    replicas[0].open()
    inside: list[list[str]] = []

    def trial() -> str:
        inside.append([calls(other(succeed), 1)[0] for other in replicas])
        return "done"

    assert replicas[2](trial)() == "done"
    assert inside == [["rejected"] * 5]
    assert all(replica.state is CircuitState.CLOSED for replica in replicas)


def test_half_open_calls_leases_that_many_slots(redis_server: RedisServer) -> None:
    """half_open_calls=2: two concurrent trials across replicas, the third is rejected, and a
    failing trial reopens the breaker for everyone."""
    a, b, c = (breaker(redis_server, open_for=0.0, half_open_calls=2) for _ in range(3))
    a.open()
    seen: list[str] = []

    def second_trial() -> None:
        seen.append(calls(c(succeed), 1)[0])
        raise RuntimeError("still down")

    def first_trial() -> None:
        seen.append(calls(b(second_trial), 1)[0])

    a(first_trial)()
    assert seen == ["rejected", "failed"]
    assert b.state is CircuitState.HALF_OPEN  # reopened; open_for=0 reads half-open at once


def test_many_half_open_slots_are_leased(redis_server: RedisServer) -> None:
    """half_open_calls=20 (22 keys per script call): the breaker runs, opens and lets 20
    concurrent trials through while half-open."""
    a, b = (breaker(redis_server, open_for=0.0, half_open_calls=20) for _ in range(2))
    assert calls(a(succeed), 1) == ["ok"]
    a.open()
    admitted = 0

    def trial(depth: int) -> None:
        nonlocal admitted
        admitted += 1
        if depth < 21:
            calls(b(trial), 1, depth + 1)  # the 21st concurrent trial is rejected

    a(trial)(1)
    assert admitted == 20


def test_open_for_runs_on_redis_time(redis_server: RedisServer) -> None:
    """open_for=0.2 s: rejected with retry_after ~0.2 s, admitted once Redis's clock says so."""
    one = breaker(redis_server, open_for=0.2)
    opened = redis_ms(redis_server)  # at or before the opening (read after, a loaded machine
    one.open()  # could put milliseconds between the two and fail a correct breaker)
    with pytest.raises(CircuitOpenError) as rejected:
        one(succeed)()
    assert 0.1 < rejected.value.retry_after <= 0.2
    deadline = time.monotonic() + 1.0
    while one.state is CircuitState.OPEN and time.monotonic() < deadline:
        time.sleep(0.01)  # waiting on Redis's own clock, bounded
    assert redis_ms(redis_server) - opened >= 200
    assert one.state is CircuitState.HALF_OPEN


def test_late_result_from_an_older_state_is_ignored(redis_server: RedisServer) -> None:
    """A call admitted while closed that fails after a transition does not count."""
    one, two = breaker(redis_server, minimum_calls=1), breaker(redis_server, minimum_calls=1)

    def slow_failure() -> None:
        two.open()
        two.close()  # two transitions while this call was in flight
        raise RuntimeError("late")

    calls(one(slow_failure), 1)
    assert one.metrics.calls == 0
    assert one.state is CircuitState.CLOSED


def test_count_window_is_shared_and_slides(redis_server: RedisServer) -> None:
    """window_calls=4 on Redis keeps the last 4 outcomes of the whole fleet."""
    one = breaker(redis_server, window_calls=4, minimum_calls=4, failure_rate=0.75)
    two = breaker(redis_server, window_calls=4, minimum_calls=4, failure_rate=0.75)
    ok = one(succeed)
    calls(ok, 1)
    calls(two(fail), 2)
    calls(ok, 3)  # the last 4: failed, ok, ok, ok
    metrics = one.metrics
    assert (metrics.calls, metrics.failures) == (4, 1)
    calls(two(fail), 2)  # ok, ok, failed, failed: half failed
    assert one.metrics.state is CircuitState.CLOSED
    calls(two(fail), 1)
    assert one.state is CircuitState.OPEN  # 3 of the last 4 failed


def test_concurrent_failures_open_it_exactly_once(redis_server: RedisServer) -> None:
    """50 concurrent failures on 5 replicas (threads) open the shared breaker once: one
    transition announced in the whole fleet."""
    replicas = [breaker(redis_server, minimum_calls=5) for _ in range(5)]
    changes: list[str] = []
    for replica in replicas:
        replica.add_listener(lambda event: changes.append(event.new))
    with ThreadPoolExecutor(max_workers=10) as pool:
        outcomes = list(pool.map(lambda n: calls(replicas[n % 5](fail), 1)[0], range(50)))
    assert changes == ["open"]
    assert outcomes.count("failed") >= 5
    assert set(outcomes) <= {"failed", "rejected"}


def test_slow_calls_open_it_on_the_breakers_clock(redis_server: RedisServer) -> None:
    """Durations are measured on the breaker's clock; slow calls from two replicas open it."""
    clock = FakeClock()
    options: dict[str, Any] = {"slow_call_duration": 1.0, "slow_call_rate": 0.5, "clock": clock}
    one, two = breaker(redis_server, **options), breaker(redis_server, **options)

    def slow() -> None:
        clock.advance(2.0)

    calls(one(slow), 1)
    assert one.metrics.slow_calls == 1
    calls(two(slow), 1)
    assert one.state is CircuitState.OPEN


def test_one_round_trip_to_admit_and_one_to_record(redis_server: RedisServer) -> None:
    """Each guarded call costs Redis exactly two commands: one EVALSHA to admit (state and
    permit together), one to record."""
    client: Any = redis_server.client()
    guarded = breaker(redis_server)(succeed)
    guarded()  # the script is loaded
    client.config_resetstat()
    for _ in range(10):
        guarded()
    commands = client.info("commandstats")
    assert commands["cmdstat_evalsha"]["calls"] == 20
    assert "cmdstat_evalsha" in commands and "cmdstat_eval" not in commands


def test_steps_send_bytes_encoded_once(redis_server: RedisServer) -> None:
    """What a step sends, exactly: the hash-tagged keys and the settings encoded once, when the
    breaker is built (redis-py would encode every str again on every call), the op and the
    permit as bytes."""
    client: Any = redis_server.client()
    sent = record_commands(client)
    store = RedisStore(client, prefix="svc:")
    one = CircuitBreaker("db", minimum_calls=2, window=60.0, half_open_calls=2, store=store)
    guarded = one(succeed)
    guarded()  # the script is loaded
    sent.clear()
    guarded()
    guarded()
    assert [args[0] for args in sent] == ["EVALSHA"] * 4
    assert all(type(arg) is bytes for args in sent for arg in args[1:])
    keys = (b"svc:{db}:breaker", b"svc:{db}:window", b"svc:{db}:trial:1", b"svc:{db}:trial:2")
    assert all(args[2:7] == (b"4", *keys) for args in sent)
    # op, now ("": Redis TIME), the settings, the permit (generation slot token failed slow)
    assert [args[7:9] for args in sent] == [(b"a", b""), (b"r", b"")] * 2
    config = b"0.5 2 30000.0 -1 60000.0 0 10 30000 180000"
    assert all(args[9] == config for args in sent)
    assert all(args[3] is sent[0][3] and args[9] is sent[0][9] for args in sent)
    admit, record = sent[0][10], sent[1][10]
    token = admit.split()[2]
    assert (admit, record) == (b"0 0 %s 0 0" % token, b"0 0 %s 0 0" % token)
    assert sent[2][10].split()[2] != token  # a token per permit


def test_script_flush_is_survived(redis_server: RedisServer) -> None:
    """After SCRIPT FLUSH the script is loaded again (EVALSHA falls back to EVAL)."""
    client: Any = redis_server.client()
    one = CircuitBreaker("db", minimum_calls=1, store=RedisStore(client))
    calls(one(succeed), 1)
    client.script_flush()
    calls(one(fail), 1)
    assert one.state is CircuitState.OPEN


def test_different_names_never_share_and_keys_expire(redis_server: RedisServer) -> None:
    """Breakers with different names are independent; their keys are hash-tagged and carry
    TTLs."""
    client: Any = redis_server.client()
    store = RedisStore(client, prefix="svc:")
    a = CircuitBreaker("a", minimum_calls=1, store=store)
    b = CircuitBreaker("b", minimum_calls=1, store=store)
    calls(a(fail), 1)
    assert a.state is CircuitState.OPEN
    assert b.state is CircuitState.CLOSED
    assert calls(b(succeed), 1) == ["ok"]
    keys = sorted(client.keys("*"))
    assert keys == [b"svc:{a}:breaker", b"svc:{a}:window", b"svc:{b}:window"]
    assert all(0 < client.pttl(key) <= 2 * 30_000 + 60_000 for key in keys)


def test_memory_store_keeps_the_local_breaker() -> None:
    """store=MemoryStore() is today's in-process breaker, with its lock-free closed path."""
    local = CircuitBreaker("m", store=MemoryStore())
    assert local._shared is None
    assert local._machine.closed_permit == 0


# -- async -------------------------------------------------------------------------------------


def test_async_client_guards_coroutines(redis_server: RedisServer) -> None:
    """A redis.asyncio client shares the breaker for coroutine functions."""

    async def scenario() -> list[str]:
        client: Any = redis_server.async_client()
        shared = CircuitBreaker("async", minimum_calls=2, store=RedisStore(client))

        @shared
        async def flaky(ok: bool) -> None:
            if not ok:
                raise RuntimeError("down")

        outcomes = []
        for ok in (False, False, True):
            try:
                await flaky(ok)
                outcomes.append("ok")
            except CircuitOpenError:
                outcomes.append("rejected")
            except RuntimeError:
                outcomes.append("failed")
        outcomes.append(shared.state.value)  # the state seen last, without I/O
        await client.aclose()
        return outcomes

    assert asyncio.run(scenario()) == ["failed", "failed", "rejected", "open"]
    assert breaker(redis_server, "async").state is CircuitState.OPEN


def test_cancelled_async_trial_frees_its_lease(redis_server: RedisServer) -> None:
    """A half-open trial cancelled mid-call releases its lease at once: the next call is the
    trial, with no wait for the lease to expire."""

    async def scenario() -> list[str]:
        client: Any = redis_server.async_client()
        shared = CircuitBreaker("cancel", open_for=0.0, store=RedisStore(client))
        await client.hset("resilience:{cancel}:breaker", mapping={"st": 1, "g": 1, "at": 0})
        started = asyncio.Event()

        @shared
        async def hang() -> None:
            started.set()
            await asyncio.Event().wait()

        @shared
        async def quick() -> str:
            return "ok"

        outcomes = []
        task = asyncio.ensure_future(hang())
        await started.wait()
        try:
            await quick()
        except CircuitOpenError:
            outcomes.append("rejected")  # the trial is taken
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        outcomes.append(await quick())  # the freed slot: this one is the trial
        outcomes.append(shared.state.value)
        await client.aclose()
        return outcomes

    assert asyncio.run(scenario()) == ["rejected", "ok", "closed"]


def test_client_colour_must_match_the_function(redis_server: RedisServer) -> None:
    """A sync client cannot guard a coroutine function, nor an async client a sync one."""
    sync_breaker = breaker(redis_server)
    async_breaker = CircuitBreaker("db", store=RedisStore(redis_server.async_client()))

    async def coroutine() -> None:
        pass

    with pytest.raises(TypeError, match=r"a redis\.asyncio\.Redis client"):
        sync_breaker(coroutine)
    with pytest.raises(TypeError, match=r"a redis\.Redis client"):
        async_breaker(succeed)
    with pytest.raises(TypeError, match=r"cannot serve sync code"):
        async_breaker.open()  # by hand, an async client cannot answer synchronously


def test_async_outage_allows_coroutines_with_one_event(redis_server: RedisServer) -> None:
    """Redis killed under a redis.asyncio client: coroutines run as if closed, no RedisError,
    one StoreUnavailable."""

    async def scenario() -> list[str]:
        client: Any = redis_server.async_client()
        shared = CircuitBreaker("async-outage", minimum_calls=1, store=RedisStore(client))

        @shared
        async def fail_async() -> None:
            raise RuntimeError("down")

        redis_server.stop()
        outcomes = []
        for _ in range(3):
            try:
                await fail_async()
            except RuntimeError as exc:
                outcomes.append(type(exc).__name__)
        await client.aclose()
        return outcomes

    with EventRecorder() as recorder:
        assert asyncio.run(scenario()) == ["RuntimeError"] * 3
    assert len(recorder.of(StoreUnavailable)) == 1


# -- outages ------------------------------------------------------------------------------------


def test_outage_allows_calls_with_one_event_then_sharing_resumes(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis killed: calls run as if closed, no RedisError, one StoreUnavailable and one
    warning; restarted: StoreRecovered, and failures are shared again."""
    one, two = breaker(redis_server), breaker(redis_server)
    calls(one(fail), 1)
    redis_server.stop()
    ran: list[int] = []
    with EventRecorder() as recorder, caplog.at_level(logging.WARNING, logger="resilience"):
        assert calls(one(fail), 6) == ["failed"] * 6  # nothing recorded: it never opens
        assert calls(one(ran.append), 2, 1) == ["ok", "ok"]
        redis_server.start()
        calls(one(fail), 1)
        calls(two(fail), 1)
    assert ran == [1, 1]
    assert [type(e) for e in recorder.of(StoreUnavailable) + recorder.of(StoreRecovered)] == [
        StoreUnavailable,
        StoreRecovered,
    ]
    unavailable = recorder.of(StoreUnavailable)[0]
    assert (unavailable.policy, unavailable.fallback) == ("db", "allow")
    assert len([r for r in caplog.records if "unavailable" in r.getMessage()]) == 1
    assert one.state is two.state is CircuitState.OPEN  # the fresh server's shared window


def test_outage_with_deny_rejects(redis_server: RedisServer) -> None:
    """on_error="deny": while Redis is unreachable the breaker refuses every call."""
    one = breaker(redis_server, on_error="deny")
    redis_server.stop()
    ran: list[int] = []
    assert calls(one(ran.append), 2, 1) == ["rejected", "rejected"]
    assert ran == []
    assert one.metrics.total_rejections == 2


# -- configuration ------------------------------------------------------------------------------


def test_bad_store_and_lease_fail_at_construction() -> None:
    """A store that is no store, or a bad trial_lease, fails naming the parameter."""
    with pytest.raises(TypeError, match="store must be a MemoryStore, a RedisStore or None"):
        CircuitBreaker("x", store=object())
    with pytest.raises(ValueError, match="trial_lease"):
        CircuitBreaker("x", trial_lease=0.0)


def test_the_redis_backend_needs_no_breaker(redis_server: RedisServer) -> None:
    """SharedCircuit runs on what it is given (totals and their lock, the clock, the slow-call
    limit, an announce callable), without a CircuitBreaker: the dependency is one-way."""
    totals, announced, clock = [0, 0, 0, 0], [], FakeClock()
    settings = CircuitBreaker(minimum_calls=1, slow_call_duration=2.0)._settings
    shared = SharedCircuit(
        RedisStore(redis_server.client()),
        "alone",
        settings,
        totals=totals,
        lock=threading.Lock(),
        clock=clock,
        announce=announced.append,
    )
    admit, record, _release = shared.steps(coroutines=False)
    permit = admit()
    clock.advance(2.0)  # as slow as the limit: counts slow, and the breaker opens
    record(permit, False, 0.0)
    assert announced == [[(CircuitState.CLOSED, CircuitState.OPEN)]]
    with pytest.raises(CircuitOpenError):
        admit()
    assert totals == [1, 0, 1, 0]


def test_replace_keeps_the_store(redis_server: RedisServer) -> None:
    """A per-origin copy with its own name is shared under that name."""
    template = breaker(redis_server, minimum_calls=1)
    copy = template.replace(name="db[https://a]")
    calls(copy(fail), 1)
    assert copy.state is CircuitState.OPEN
    assert template.state is CircuitState.CLOSED
    assert breaker(redis_server, "db[https://a]").state is CircuitState.OPEN


# -- a fleet of processes -----------------------------------------------------------------------


def fleet_replica(url: str, ready: Any, go: Any, results: Any) -> None:
    """One replica: two failures, then (once all replicas failed) one more call."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
    shared = CircuitBreaker("fleet", minimum_calls=6, failure_rate=1.0, store=RedisStore(client))
    changes: list[str] = []
    shared.add_listener(lambda event: changes.append(event.new))
    ready.wait(30)
    before = calls(shared(fail), 2)
    go.wait(30)  # every replica has failed twice
    ran: list[int] = []
    after = calls(shared(ran.append), 1, 1)
    results.put((before, after, len(ran), changes))


def test_failures_from_three_processes_open_it_for_all(redis_server: RedisServer) -> None:
    """Three processes, two failures each: the sixth opens the breaker (once) and then every
    process rejects without calling its function."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    ready, go = context.Barrier(4), context.Barrier(4)
    workers = [
        context.Process(target=fleet_replica, args=(redis_server.url, ready, go, results))
        for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    ready.wait(60)
    go.wait(60)
    reports = [results.get(timeout=30) for _ in workers]
    for worker in workers:
        worker.join(10)
    assert all(before == ["failed", "failed"] for before, _, _, _ in reports)
    assert [after for _, after, _, _ in reports] == [["rejected"]] * 3
    assert sum(ran for _, _, ran, _ in reports) == 0
    assert sorted(change for *_, changes in reports for change in changes) == ["open"]


def trial_replica(url: str, ready: Any, release: Any, results: Any) -> None:
    """One replica of a half-open breaker: try one call that holds its trial until released."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
    shared = CircuitBreaker("trial", open_for=0.0, store=RedisStore(client))
    ready.wait(30)

    def hold() -> None:
        results.put("running")
        release.wait(30)

    results.put(calls(shared(hold), 1)[0])


def test_half_open_runs_one_trial_across_processes(redis_server: RedisServer) -> None:
    """Three processes try a half-open breaker at once: exactly one trial runs; the other two
    are rejected while it is in flight."""
    CircuitBreaker("trial", store=RedisStore(redis_server.client())).open()
    context = multiprocessing.get_context("spawn")
    results, release = context.Queue(), context.Event()
    ready = context.Barrier(4)
    workers = [
        context.Process(target=trial_replica, args=(redis_server.url, ready, release, results))
        for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    ready.wait(60)
    first = sorted(results.get(timeout=30) for _ in range(3))  # the trial holds its slot
    release.set()
    last = results.get(timeout=30)
    for worker in workers:
        worker.join(10)
    assert (first, last) == (["rejected", "rejected", "running"], "ok")


def dying_replica(url: str) -> None:
    """Take the half-open trial and die inside the call, never reporting."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
    shared = CircuitBreaker("lease", open_for=0.0, trial_lease=0.4, store=RedisStore(client))
    shared(os._exit)(3)


def test_dead_owners_lease_expires(redis_server: RedisServer) -> None:
    """A process dies holding the trial: the others are rejected until its 0.4 s lease
    expires on Redis's clock, then one of them gets the trial."""
    survivor = breaker(redis_server, "lease", open_for=0.0, trial_lease=0.4)
    survivor.open()
    process = multiprocessing.get_context("spawn").Process(
        target=dying_replica, args=(redis_server.url,)
    )
    process.start()
    process.join(30)
    assert process.exitcode == 3
    died = redis_ms(redis_server)
    assert calls(survivor(succeed), 1) == ["rejected"]
    deadline = time.monotonic() + 1.0
    outcome = ["rejected"]
    while outcome == ["rejected"] and time.monotonic() < deadline:
        time.sleep(0.01)  # waiting on Redis's own clock (the lease's PX), bounded
        outcome = calls(survivor(succeed), 1)
    assert outcome == ["ok"]
    assert redis_ms(redis_server) - died < 1000
    assert survivor.state is CircuitState.CLOSED


# -- the script against the in-memory state machine ----------------------------------------------

# (delay in ms, op, which permit, failed, slow); times sit at half milliseconds, never on a slice
# edge or at exactly open_for, where seconds and milliseconds could round apart.
model_steps = st.lists(
    st.tuples(
        st.sampled_from([0, 0, 1, 30, 99, 310]),  # 310: past open_for in one step
        st.sampled_from(
            ["admit"] * 4 + ["record"] * 4 + ["poll"] * 2 + ["release", "open", "close"]
        ),
        st.integers(0, 7),
        st.sampled_from([False, False, True]),  # mostly successes: windows fill before opening
        st.sampled_from([False, False, True]),
    ),
    min_size=20,
    max_size=80,
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@pytest.mark.parametrize("window_calls", [None, 3])
@given(
    steps=model_steps,
    slow_rate=st.sampled_from([None, 0.5]),
    half_open_calls=st.integers(1, 2),
)
def test_script_matches_the_state_machine(
    redis_server: RedisServer,
    window_calls: int | None,
    steps: list[tuple[int, str, int, bool, bool]],
    slow_rate: float | None,
    half_open_calls: int,
) -> None:
    """On any sequence of admits, outcomes, releases, polls and forced moves (times pinned),
    the Redis script and the in-memory StateMachine agree on every verdict, state,
    generation, retry_after and window count."""
    # A roomy socket timeout: on a loaded machine a step past 0.5 s read as an outage (None).
    client: Any = redis_server.client(socket_timeout=5.0)
    client.flushall()
    options: dict[str, Any] = {
        "failure_rate": 0.5,
        "minimum_calls": 2,
        "window": 1.0,
        "window_calls": window_calls,
        "open_for": 0.3005,
        "half_open_calls": half_open_calls,
        "trial_lease": 60.0,  # real time: no lease may expire during the example
    }
    if slow_rate is not None:
        options.update(slow_call_duration=1.0, slow_call_rate=slow_rate)
    shared = CircuitBreaker("model", store=RedisStore(client), **options)._shared
    assert shared is not None
    outcomes: OutcomeWindow = CountWindow(window_calls) if window_calls else TimeWindow(1.0)
    machine = StateMachine(
        outcomes,
        failure_rate=0.5,
        minimum_calls=2,
        open_for=0.3005,
        half_open_calls=half_open_calls,
        slow_call_rate=slow_rate,
    )
    held: list[tuple[int, Permit]] = []
    now_ms = 1_000_000.5
    for number, (delay, op, which, failed, slow) in enumerate(steps):
        now_ms += delay
        now = now_ms / 1000.0
        if op == "admit":
            permit = machine.admit(now)
            step = shared.step(b"a", (0, 0, b"token%d" % number), now_ms=now_ms)
            assert step is not None
            expected = "R" if permit == REJECTED else ("T" if permit & 1 else "C")
            assert step.verdict == expected
            if permit == REJECTED:
                assert step.retry_after == pytest.approx(machine.retry_after(now), abs=1e-6)
            else:
                held.append((permit, (step.generation, step.slot, b"token%d" % number)))
        elif op in ("record", "release") and held:
            permit, token = held.pop(which % len(held))
            if op == "record":
                machine.record(permit, failed, slow, now)
                step = shared.step(b"r", token, failed, slow, now_ms=now_ms)
            else:
                machine.release(permit)
                step = shared.step(b"x", token, now_ms=now_ms)
        elif op == "poll":
            machine.poll(now)
            outcomes.refresh(now)
            step = shared.step(b"p", now_ms=now_ms)
            assert step is not None
            assert (step.calls, step.failures, step.slow) == (
                outcomes.calls,
                outcomes.failures,
                outcomes.slow,
            )
        elif op in ("open", "close"):
            machine.force(CircuitState.OPEN if op == "open" else CircuitState.CLOSED, now)
            step = shared.step(b"o" if op == "open" else b"c", now_ms=now_ms)
        else:
            continue
        assert step is not None
        assert (step.state, step.generation) == (machine.state, machine.generation)


def test_count_window_evicts_failures_and_slow_calls_exactly(redis_server: RedisServer) -> None:
    """Directed at the ring in breaker.lua: each outcome leaves the count window after exactly
    ``window_calls`` newer ones, with its failure and its slowness (the random model test
    rarely builds these sequences)."""
    clock = FakeClock()
    one = breaker(
        redis_server,
        window_calls=3,
        minimum_calls=3,
        failure_rate=1.0,
        slow_call_duration=1.0,
        slow_call_rate=1.0,
        clock=clock,
    )

    def slow() -> None:
        clock.advance(2.0)  # measured on the breaker's clock

    def slow_failure() -> None:
        clock.advance(2.0)
        raise RuntimeError("slow and failed")

    seen = []
    for guarded in (one(slow_failure), one(succeed), one(slow), one(succeed), one(succeed)):
        calls(guarded, 1)
        metrics = one.metrics
        seen.append((metrics.calls, metrics.failures, metrics.slow_calls))
    assert seen == [(1, 1, 1), (2, 1, 1), (3, 1, 2), (3, 0, 1), (3, 0, 1)]
    calls(one(succeed), 1)
    metrics = one.metrics
    assert (metrics.calls, metrics.failures, metrics.slow_calls) == (3, 0, 0)
    assert one.state is CircuitState.CLOSED


def test_async_control_reads_and_moves_the_fleets_breaker(redis_server: RedisServer) -> None:
    """On a redis.asyncio client, state_async asks Redis (another replica's change is seen),
    open_async / close_async move the whole fleet; on a local breaker they are the sync ones."""

    async def scenario() -> list[CircuitState]:
        client: Any = redis_server.async_client()
        try:
            shared = CircuitBreaker("aio-control", store=RedisStore(client))
            other = breaker(redis_server, "aio-control")  # a sync replica
            seen = [await shared.state_async()]
            other.open()
            seen.append(await shared.state_async())
            await shared.close_async()
            seen.append(other.state)
            await shared.open_async()
            seen.append(other.state)
            local = CircuitBreaker("local")
            await local.open_async()
            seen.append(await local.state_async())
            return seen
        finally:
            await client.aclose()

    closed, opened = CircuitState.CLOSED, CircuitState.OPEN
    assert asyncio.run(scenario()) == [closed, opened, closed, opened, opened]


def test_rejections_inside_are_no_outcome_for_a_shared_breaker(redis_server: RedisServer) -> None:
    """A policy inside refusing the call (BulkheadFullError) is recorded nowhere: two refusals
    do not open a shared breaker with minimum_calls=2, and a refused half-open trial frees its
    lease at once for the next trial (sync client)."""
    shared = breaker(redis_server, "inner")

    @shared
    def refused() -> None:
        raise BulkheadFullError("pool", 1)

    for _ in range(2):
        with pytest.raises(BulkheadFullError):
            refused()
    assert shared.state is CircuitState.CLOSED and shared.metrics.calls == 0
    shared.open()
    redis_server.client().hset("resilience:{inner}:breaker", "at", 0)  # open_for has passed
    with pytest.raises(BulkheadFullError):
        refused()
    assert shared.state is CircuitState.HALF_OPEN
    assert shared(succeed)() is None  # the freed lease: this one is the trial
    assert shared.state is CircuitState.CLOSED


def test_rejections_inside_free_an_async_shared_trial(redis_server: RedisServer) -> None:
    """The async shell on redis.asyncio: a half-open trial refused inside frees its lease."""

    async def scenario() -> list[str]:
        client: Any = redis_server.async_client()
        shared = CircuitBreaker("inner-async", open_for=60.0, store=RedisStore(client))
        # Opened at Redis time 0: open_for has long passed, the next call is the trial.
        await client.hset("resilience:{inner-async}:breaker", mapping={"st": 1, "g": 1, "at": 0})

        @shared
        async def refused() -> None:
            raise ThrottledError("backend", 0.9)

        @shared
        async def quick() -> str:
            return "ok"

        outcomes = []
        try:
            await refused()
        except ThrottledError:
            outcomes.append("refused inside")
        outcomes.append(await shared.state_async())
        outcomes.append(await quick())
        outcomes.append(await shared.state_async())
        await client.aclose()
        return [str(getattr(o, "value", o)) for o in outcomes]

    assert asyncio.run(scenario()) == ["refused inside", "half_open", "ok", "closed"]
