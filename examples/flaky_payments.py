"""An order service charging a flaky payments dependency, bare and behind resilience policies.

Payments is a function with injected faults, on a simulated clock (``FakeClock``: the policies'
backoff sleeps and open periods pass in simulated time, so the demo is instant and repeatable).
Charges arrive every 10 ms for 6 s, through three phases:

1. flaky      (0-2 s)  25 % of calls fail with ConnectionError (transient network blips);
2. outage     (2-4 s)  every call fails: payments is down;
3. recovered  (4-6 s)  payments answers again (still with 25 % blips).

The same charges go through a bare call and through
``Pipeline(Fallback, Retry(budget), CircuitBreaker, Bulkhead)``. Run: ``make demo``.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from resilience import (
    Backoff,
    Bulkhead,
    CircuitBreaker,
    CircuitStateChanged,
    Event,
    Fallback,
    Pipeline,
    Retry,
    RetryBudget,
    RetryGaveUp,
    RetryScheduled,
    subscribe,
)
from resilience.testing import FakeClock

CHARGES = 600
INTERVAL = 0.010  # a charge every 10 ms
OUTAGE = (2.0, 4.0)  # payments is down between these times (simulated seconds)
QUEUED = "queued-for-later"


@dataclass
class Payments:
    """A stand-in for the payments service: fails by schedule, counts what reaches it."""

    clock: FakeClock
    rng: random.Random
    received: int = 0

    def charge(self, order_id: str) -> str:
        self.received += 1
        self.clock.advance(0.002)  # 2 ms of service latency
        if OUTAGE[0] <= self.clock.now() < OUTAGE[1]:
            raise ConnectionError("payments is down")
        if self.rng.random() < 0.25:
            raise ConnectionError("connection reset by peer")
        return f"receipt-{order_id}"


def run(
    label: str, clock: FakeClock, charge: Callable[[str], str], payments: Payments
) -> Counter[str]:
    """Send every charge at its arrival time; tally what the order service saw."""
    outcomes: Counter[str] = Counter()
    for number in range(CHARGES):
        arrival = number * INTERVAL
        if clock.now() < arrival:
            clock.advance(arrival - clock.now())
        try:
            receipt = charge(f"order-{number}")
        except ConnectionError:
            outcomes["failed"] += 1
        else:
            outcomes["queued" if receipt == QUEUED else "charged"] += 1
    print(
        f"{label:<10} charged {outcomes['charged']:>3}   queued {outcomes['queued']:>3}   "
        f"failed {outcomes['failed']:>3}   calls reaching payments {payments.received:>4}"
    )
    return outcomes


def main() -> None:
    print(
        f"{CHARGES} charges over {CHARGES * INTERVAL:.0f} s (simulated); payments drops 25 % of "
        f"calls and is down from {OUTAGE[0]:.0f} s to {OUTAGE[1]:.0f} s\n"
    )
    bare_clock = FakeClock()
    bare_payments = Payments(bare_clock, random.Random(7))
    bare = run("bare", bare_clock, bare_payments.charge, bare_payments)

    clock = FakeClock()
    payments = Payments(clock, random.Random(7))
    breaker = CircuitBreaker(
        "payments", failure_rate=0.5, minimum_calls=20, window=1.0, open_for=0.5, clock=clock
    )
    policy = Pipeline(
        Fallback(QUEUED),  # degrade: queue the charge for later and answer the customer
        Retry(
            attempts=4,
            on=ConnectionError,
            backoff=Backoff(initial=0.01, maximum=0.2, rng=random.Random(1)),
            budget=RetryBudget(ratio=0.2, min_retries_per_second=2.0, window=2.0, clock=clock),
            clock=clock,
        ),
        breaker,
        Bulkhead(8),
    )
    seen: Counter[str] = Counter()

    def watch(event: Event) -> None:
        if isinstance(event, RetryScheduled):
            seen["retries"] += 1
        elif isinstance(event, RetryGaveUp):
            seen[f"retry gave up ({event.why})"] += 1
        elif isinstance(event, CircuitStateChanged):
            seen[f"breaker {event.old} -> {event.new}"] += 1
            print(f"  t={clock.now():5.2f}s  breaker {event.old} -> {event.new}")

    unsubscribe = subscribe(watch)
    try:
        guarded = run("resilient", clock, policy(payments.charge), payments)
    finally:
        unsubscribe()

    print("\nwhat the policies did:")
    for what, count in sorted(seen.items()):
        print(f"  {what:<45} {count:>4}")
    print(
        f"\nerrors seen by the order service: {bare['failed']} bare -> {guarded['failed']} "
        f"resilient ({guarded['queued']} charges queued for later instead);\n"
        f"successful charges: {bare['charged']} bare -> {guarded['charged']} resilient; "
        f"load on payments: {bare_payments.received} -> {payments.received} calls"
    )


if __name__ == "__main__":
    main()
