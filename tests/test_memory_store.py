"""MemoryStore's structure: the same answers as a plain dict model on random steps, bounds on
its tables (what it forgets first, what it refuses), and clean-up as state expires."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilience import RateLimiter
from resilience._gcra import GcraParams, RateLimitDecision, gcra_step
from resilience.stores import Claim, MemoryStore, _memory
from resilience.testing import FakeClock


class DictModel:
    """Idempotency records and TATs in plain dicts, never cleaned: the rules and nothing else."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.records: dict[str, list[object]] = {}  # key -> [fingerprint, token, expires, response]
        self.tats: dict[str, float] = {}

    def claim(self, key: str, fingerprint: str, lease: float, token: str) -> Claim:
        now = self.clock.now()
        record = self.records.get(key)
        if record is None or record[2] <= now:  # type: ignore[operator]
            self.records[key] = [fingerprint, token, now + lease, None]
            return Claim("claimed", token)
        if record[0] != fingerprint:
            return Claim("mismatch")
        if record[3] is None:
            return Claim("in_progress")
        return Claim("replay", response=record[3])  # type: ignore[arg-type]

    def held(self, key: str, fingerprint: str, token: str) -> list[object] | None:
        """The running record ``token`` holds; a free key (gone, or expired as the Redis key's
        TTL would) is taken again for it."""
        record = self.records.get(key)
        if record is None or record[2] <= self.clock.now():  # type: ignore[operator]
            record = self.records[key] = [fingerprint, token, self.clock.now(), None]
        return record if record[1] == token and record[3] is None else None

    def renew(self, key: str, fingerprint: str, token: str, lease: float) -> str:
        record = self.held(key, fingerprint, token)
        if record is None:
            return "lost"
        record[2] = self.clock.now() + lease
        return "renewed"

    def complete(self, key: str, fingerprint: str, token: str, response: bytes, ttl: float) -> str:
        record = self.held(key, fingerprint, token)
        if record is None:
            return "lost"
        record[1], record[2], record[3] = None, self.clock.now() + ttl, response
        return "stored"

    def release(self, key: str, token: str) -> None:
        record = self.records.get(key)
        if record is not None and record[1] == token and record[3] is None:
            del self.records[key]

    def gcra(self, key: str, params: GcraParams, cost: int) -> RateLimitDecision:
        decision, new_tat = gcra_step(params, self.tats.get(key), self.clock.now(), cost, 0.0)
        if new_tat is not None:
            self.tats[key] = new_tat
        return decision


KEYS = st.sampled_from(["a", "b", "c", "d"])
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("claim"), KEYS, st.sampled_from(["x", "y"]), st.sampled_from([1.0, 5.0])),
        st.tuples(st.just("complete"), KEYS, st.booleans(), st.sampled_from([1.0, 10.0])),
        st.tuples(st.just("renew"), KEYS, st.booleans(), st.sampled_from([1.0, 5.0])),
        st.tuples(st.just("release"), KEYS, st.booleans()),
        st.tuples(st.just("gcra"), KEYS, st.integers(0, 2)),
        st.tuples(st.just("advance"), st.sampled_from([0.0, 0.5, 1.0, 3.0, 6.0, 12.0])),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(steps=STEPS)
def test_store_answers_as_a_plain_dict_would(steps: list[tuple[object, ...]]) -> None:
    """Claims, renewals, completions, releases, GCRA steps and the passing of time give the model's
    answers (heaps, lazy clean-up and the completed-records order change nothing visible)."""
    clock = FakeClock(start=1000.0)
    store, model = MemoryStore(clock=clock), DictModel(clock)
    params = GcraParams(emission=1.0, tolerance=3.0, limit=3)
    tokens: dict[str, str] = {}
    for step in steps:
        kind = step[0]
        if kind == "advance":
            clock.advance(step[1])  # type: ignore[arg-type]
            continue
        key = str(step[1])
        if kind == "claim":
            got = store.idempotency_claim(key, str(step[2]), float(step[3]))  # type: ignore[arg-type]
            if got.token is not None:
                tokens[key] = got.token
            want = model.claim(key, str(step[2]), float(step[3]), got.token or "")  # type: ignore[arg-type]
            assert (got.outcome, got.response) == (want.outcome, want.response)
        elif kind == "complete":
            token = tokens.get(key, "none") if step[2] else "stolen"
            body = f"{key}@{clock.now()}".encode()
            ttl = float(step[3])  # type: ignore[arg-type]
            assert store.idempotency_complete(key, "x", token, body, ttl) == model.complete(
                key, "x", token, body, ttl
            )
        elif kind == "renew":
            token = tokens.get(key, "none") if step[2] else "stolen"
            lease = float(step[3])  # type: ignore[arg-type]
            assert store.idempotency_renew(key, "x", token, lease) == model.renew(
                key, "x", token, lease
            )
        elif kind == "release":
            token = tokens.get(key, "none") if step[2] else "stolen"
            store.idempotency_release(key, token)
            model.release(key, token)
        else:
            cost = int(step[2])  # type: ignore[call-overload]
            assert store.gcra(key, params, cost, 0.0) == model.gcra(key, params, cost)


def test_a_full_rate_limit_table_forgets_the_key_nearest_to_refilled(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """With room for two partitions, a third one evicts the partition whose quota refills
    first (it starts afresh), keeps the other's debt, and warns once."""
    store = MemoryStore(clock=clock, max_limit_keys=2)
    limiter = RateLimiter(1, per=10.0, name="api", store=store)
    assert limiter.try_acquire(partition="early").allowed
    clock.advance(5.0)
    assert limiter.try_acquire(partition="late").allowed
    with caplog.at_level(logging.WARNING, logger="resilience"):
        assert limiter.try_acquire(partition="third").allowed
        assert not limiter.try_acquire(partition="late").allowed  # still in debt
        assert limiter.try_acquire(partition="early").allowed  # forgotten: a fresh quota
    assert [r.getMessage() for r in caplog.records] == [
        "resilience: MemoryStore reached max_limit_keys; "
        "forgetting the rate-limit state nearest to expiry"
    ]


def test_refilled_keys_are_dropped_so_the_bound_is_never_met(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """1,000 partitions that all refill make room: 1,000 new ones later fit in a table of
    1,000 without evicting anybody (no warning)."""
    store = MemoryStore(clock=clock, max_limit_keys=1_000)
    limiter = RateLimiter(1, per=1.0, name="api", store=store)
    with caplog.at_level(logging.WARNING, logger="resilience"):
        for n in range(1_000):
            assert limiter.try_acquire(partition=f"old-{n}").allowed
        clock.advance(2.0)
        for n in range(1_000):
            assert limiter.try_acquire(partition=f"new-{n}").allowed
    assert caplog.records == []


def test_full_records_forget_the_oldest_completed_never_a_running_claim(
    clock: FakeClock,
) -> None:
    """With room for two records: a completed one is forgotten for a new claim (its key
    claims afresh), but when both records are running claims a new key is "unavailable"."""
    store = MemoryStore(clock=clock, max_records=2)
    done = store.idempotency_claim("done", "fp", 60.0)
    assert done.token is not None
    assert store.idempotency_complete("done", "fp", done.token, b"stored", 3600.0) == "stored"
    assert store.idempotency_claim("running", "fp", 60.0).outcome == "claimed"
    assert store.idempotency_claim("new", "fp", 60.0).outcome == "claimed"  # "done" forgotten
    assert store.idempotency_claim("fourth", "fp", 60.0).outcome == "unavailable"
    assert store.idempotency_claim("running", "fp", 60.0).outcome == "in_progress"
    clock.advance(61.0)  # the leases of "running" and "new" ran out: room again
    assert store.idempotency_claim("fourth", "fp", 60.0).outcome == "claimed"


def test_stored_bytes_are_bounded_oldest_response_first(clock: FakeClock) -> None:
    """Past max_record_bytes the oldest stored responses go; the one just stored stays even
    when it alone is over the bound (forgetting it would run its retry again)."""
    store = MemoryStore(clock=clock, max_record_bytes=10)
    for key, body in (("a", b"123456"), ("b", b"654321"), ("c", b"x" * 12)):
        claim = store.idempotency_claim(key, "fp", 60.0)
        assert claim.token is not None
        assert store.idempotency_complete(key, "fp", claim.token, body, 3600.0) == "stored"
    assert store.idempotency_claim("a", "fp", 60.0).outcome == "claimed"
    assert store.idempotency_claim("b", "fp", 60.0).outcome == "claimed"
    assert store.idempotency_claim("c", "fp", 60.0) == Claim("replay", response=b"x" * 12)


@pytest.mark.parametrize("name", ["max_limit_keys", "max_records", "max_record_bytes"])
def test_bounds_are_checked_at_construction(name: str) -> None:
    """A bound below one, or not an int, fails at construction, naming the parameter."""
    with pytest.raises(ValueError, match=name):
        MemoryStore(**{name: 0})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=name):
        MemoryStore(**{name: 1.5})  # type: ignore[arg-type]


def _steps(call: Callable[[], object]) -> int:
    """How many lines of ``resilience/stores/_memory.py`` one call executes (each turn of a
    loop or a comprehension counts): the work done under the store's lock, without a clock."""
    count = 0
    here = _memory.__file__

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return local

    def global_(frame: FrameType, event: str, arg: Any) -> Any:
        return local if frame.f_code.co_filename == here else None

    sys.settrace(global_)
    try:
        call()
    finally:
        sys.settrace(None)
    return count


def _claim_work(clock: FakeClock, records: int, claims: int = 3_000) -> tuple[float, int]:
    """Mean and max steps per claim of a fresh key (then completed) beside ``records``
    completed records."""
    store = MemoryStore(clock=clock, max_records=records + claims + 1)
    for n in range(records):
        token = store.idempotency_claim(f"done-{n}", "fp", 60.0).token
        assert token is not None
        assert store.idempotency_complete(f"done-{n}", "fp", token, b"ok", 3600.0) == "stored"
    work = []
    claimed: list[Claim] = []
    for n in range(claims):
        key = f"new-{n}"
        work.append(_steps(lambda: claimed.append(store.idempotency_claim(key, "fp", 60.0))))  # noqa: B023
        token = claimed.pop().token
        assert token is not None
        assert store.idempotency_complete(key, "fp", token, b"ok", 3600.0) == "stored"
    return sum(work) / claims, max(work)


def test_a_claim_does_the_same_work_beside_ten_times_more_records(clock: FakeClock) -> None:
    """A claim beside 20,000 completed records executes as many steps, on average and at
    worst, as beside 2,000: no clean-up walks the records (issue 12, item 8)."""
    mean_small, max_small = _claim_work(clock, 2_000)
    mean_big, max_big = _claim_work(clock, 20_000)
    assert mean_big <= 1.1 * mean_small, (mean_small, mean_big)
    assert max_big <= 1.1 * max_small, (max_small, max_big)


def _gcra_work(clock: FakeClock, partitions: int, calls: int = 3_000) -> tuple[float, int]:
    """Mean and max steps per decision for a new partition in a full table of
    ``partitions``, every one of them used twice (its TAT moved past its heap entry)."""
    store = MemoryStore(clock=clock, max_limit_keys=partitions)
    params = GcraParams(emission=1.0, tolerance=3600.0, limit=3600)
    for _ in range(2):
        for n in range(partitions):
            store.gcra(f"old-{n}", params, 1, 0.0)
    work = [_steps(lambda: store.gcra(f"new-{n}", params, 1, 0.0)) for n in range(calls)]  # noqa: B023
    return sum(work) / calls, max(work)


def test_a_new_partition_does_the_same_work_beside_ten_times_more(clock: FakeClock) -> None:
    """A decision for a new partition in a full table of 20,000 executes as many steps, on
    average and at worst, as in one of 2,000: eviction never walks the table."""
    mean_small, max_small = _gcra_work(clock, 2_000)
    mean_big, max_big = _gcra_work(clock, 20_000)
    assert mean_big <= 1.1 * mean_small, (mean_small, mean_big)
    assert max_big <= 1.1 * max_small, (max_small, max_big)
