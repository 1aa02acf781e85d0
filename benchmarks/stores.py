"""MemoryStore cost as it fills: µs per idempotency claim and per GCRA decision with 100, 10k
and 50k live records beside it, in one run (issue 12, item 8).

A store whose per-call cost grows with the number of records it holds turns a busy server's
key space into latency (and a client that adds keys into a lever on everybody's). Each case
fills its own store first with records that stay live for the whole run (a one-hour lease, a
limiter that refills once an hour), then times:

- ``claim+release``: claim a fresh key and release it, so the count stays where it was;
- ``gcra, one hot partition``: one more decision for a partition already in the table;
- ``gcra, new partition``: a decision for a partition never seen (the table grows by one per
  call: by at most ``batch`` over the run, small beside 10k and 50k).

The ratio to the 100-record case is the figure to read: 1.0 means the cost does not depend on
how full the store is.
"""

from __future__ import annotations

import itertools

from benchmarks._harness import Case, header, run_cases, sizes, table
from resilience import RateLimiter
from resilience.stores import MemoryStore

SIZES = (100, 10_000, 50_000)


def _claims(size: int) -> Case:
    store = MemoryStore()
    for n in range(size):
        store.idempotency_claim(f"live-{n}", "fp", 3600.0)
    fresh = itertools.count()
    claim, release = store.idempotency_claim, store.idempotency_release

    def call(i: int) -> int:
        key = f"fresh-{next(fresh)}"
        token = claim(key, "fp", 3600.0).token
        assert token is not None
        release(key, token)
        return i

    return Case(f"claim+release, {size:,} live records", call, group="idempotency records")


def _limiter(size: int) -> RateLimiter:
    limiter = RateLimiter(1, per=3600.0, name="bench", store=MemoryStore())
    for n in range(size):
        limiter.try_acquire(partition=f"live-{n}")
    return limiter


def _hot(size: int) -> Case:
    limiter = RateLimiter(1e9, burst=1000, name="hot", store=_limiter(size)._store)
    decide = limiter.try_acquire

    def call(i: int) -> int:
        return i if decide(partition="hot").allowed else -1

    return Case(f"gcra, one hot partition, {size:,} live", call, group="GCRA table")


def _new(size: int) -> Case:
    limiter = _limiter(size)
    fresh = itertools.count()
    decide = limiter.try_acquire

    def call(i: int) -> int:
        return i if decide(partition=f"new-{next(fresh)}").allowed else -1

    return Case(f"gcra, new partition, {size:,} live", call, group="GCRA table")


def main(argv: list[str] | None = None) -> None:
    rounds, batch, budget = sizes(argv, __doc__, quick=(3, 500, 20.0), full=(7, 2_000, 120.0))
    print(header(["resilience"]))
    print(f"# {rounds} interleaved rounds of {batch} calls; median µs per call\n")
    for make in (_claims, _hot, _new):
        cases = [make(size) for size in SIZES]
        results = run_cases(cases, rounds=rounds, batch=batch, max_seconds=budget)
        print(table(results, baseline=cases[0].name, ours=cases[0].name))
        base = results[0].median
        growth = ", ".join(f"{r.median / base:.2f}" for r in results[1:])
        print(f"cost at 10k, 50k / cost at 100: {growth}\n")


if __name__ == "__main__":
    main()
