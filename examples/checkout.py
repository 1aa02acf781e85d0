"""Order -> payments -> bank, and notifications, over real HTTP on 127.0.0.1, through faults.

Three services run on loopback: **payments** (ASGI, on uvicorn, behind ``IdempotencyMiddleware``
and ``DeadlineMiddleware``), which charges the **bank** (ASGI, behind ``IdempotencyMiddleware``)
through a resilient client, and **notifications** (WSGI, threaded wsgiref). Payments misbehaves
on a seeded schedule: 15 % of charges get ``503 Retry-After: 0`` before anything is charged;
10 % charge the bank but answer slowly (after the caller's 0.1 s attempt timeout: the caller
cannot know whether it was charged); 5 % charge the bank and then crash (500); for orders 40-54
payments is down (503 at once). Notifications fail 20 % of the time with a 500.

The same 90 orders, 30 ms apart, are placed by three order services:

- **bare**: one ``httpx.post`` per call, no retries;
- **naive retries**: retry any timeout or 5xx up to 4 times, no idempotency keys — what a
  hand-written loop around httpx does;
- **resilience**: ``ResilientTransport`` (retry with budget and backoff, breaker, deadline,
  ``Idempotency-Key`` on every charge, and ``origins_honour_keys=True``: payments is ours,
  behind ``IdempotencyMiddleware``, so a keyed charge may be resent after a timeout or a 5xx)
  and a dead-letter queue (``dead_letter=``, SQLite in a temp dir) that keeps every charge
  the transport could not finish — payments down, the breaker open, the outcome unknown after
  a timeout — with its key; when payments has recovered, a ``replay`` charges the backlog with
  the same keys, so a charge that did go through is answered from payments' record, not made
  again. Notifications are best effort (notifications does not dedupe by key, so a POST it
  may have acted on is not resent: a failed notification is dropped).

The table shows what each cost: orders paid, duplicate bank charges, requests payments received.
Payments derives the key of its bank call from the order service's key, so a payments run that
crashed after charging and runs again for the retry sends the bank the same key: with keys end
to end, each order is charged once; without them (naive retries), every re-run charges again.
Run: ``make demo`` or ``.venv/bin/python examples/checkout.py``.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from resilience import (
    Backoff,
    CircuitBreaker,
    CircuitOpenError,
    CircuitStateChanged,
    Event,
    Retry,
    RetryBudget,
    subscribe,
)
from resilience.asgi import DeadlineMiddleware, IdempotencyMiddleware
from resilience.deadletter import DeadLetterQueue, SQLiteStore, parked_entry, replay
from resilience.http import AsyncResilientTransport, ResilientTransport
from resilience.stores import MemoryStore
from resilience.testing import serve_asgi, serve_wsgi

ORDERS = 90
OUTAGE = range(40, 55)
ATTEMPT_TIMEOUT = 0.1  # what the order service gives one call to payments
SLOW = 0.2  # how long a slow charge takes (longer than the attempt timeout)
PAUSE = 0.03  # between one order's end and the next order


@dataclass
class Bank:
    """The bank: charges cards, once per key (it has its own idempotency middleware)."""

    charges: Counter[str] = field(default_factory=Counter)

    def app(self) -> Any:
        async def bank(scope: Any, receive: Any, send: Any) -> None:
            body = (await receive()).get("body", b"")
            order = json.loads(body)["order"]
            self.charges[order] += 1  # one event loop: no lock needed
            await _respond(send, 201, json.dumps({"charged": order}).encode())

        # One trusted caller (payments): an explicit shared key namespace.
        return IdempotencyMiddleware(bank, store=MemoryStore(), shared_keys=True)


@dataclass
class Payments:
    """The payments service's state: the bank it charges, and the fault schedule."""

    rng: random.Random
    bank: str = ""  # the bank's base URL
    outage: range = OUTAGE  # the orders during which payments is down
    order: int = -1  # the order being placed (set by the driver, read by the schedule)
    received: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    recovered: bool = False  # set once the orders are placed: no more faults

    def fault(self) -> str:
        if self.recovered:
            return "ok"
        if self.order in self.outage:
            return "down"
        roll = self.rng.random()
        return (
            "busy" if roll < 0.15 else "slow" if roll < 0.25 else "crash" if roll < 0.30 else "ok"
        )

    def app(self) -> Any:
        async def payments(scope: Any, receive: Any, send: Any) -> None:
            body = b""
            more = True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
            with self.lock:
                self.received += 1
                fault = self.fault()
            if fault in ("down", "busy"):
                await _respond(send, 503, b'{"error": "busy"}', [(b"retry-after", b"0")])
                return
            order = json.loads(body)["order"]
            # The bank is ours too (IdempotencyMiddleware): its keyed charges may be resent.
            transport = AsyncResilientTransport(
                retry=Retry(3), origins_honour_keys=True, tracing=False
            )
            async with httpx.AsyncClient(transport=transport) as bank:  # keys derived from ours
                charged = await bank.post(f"{self.bank}/charges", json={"order": order})
            if fault == "crash":
                raise RuntimeError("payments crashed after charging the bank")
            if fault == "slow":
                await asyncio.sleep(SLOW)
            await _respond(send, charged.status_code, charged.content)

        # One trusted caller (the checkout driver): an explicit shared key namespace.
        return IdempotencyMiddleware(
            DeadlineMiddleware(payments), store=MemoryStore(), shared_keys=True
        )


async def _respond(send: Any, status: int, body: bytes, extra: list[Any] | None = None) -> None:
    headers = [(b"content-type", b"application/json"), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@dataclass
class Notifications:
    rng: random.Random
    sent: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Any:
        def notifications(environ: Any, start_response: Any) -> list[bytes]:
            environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            with self.lock:
                failed = self.rng.random() < 0.2
                self.sent += not failed
            start_response("500 Internal Server Error" if failed else "202 Accepted", [])
            return [b""]

        return notifications


PlaceOrder = Callable[[str], str]


@dataclass
class Drain:
    """The dead-letter backlog: how many charges were parked, how many the replay charged,
    how many are left, and how long it took once payments had recovered."""

    parked: int
    charged: int
    left: int
    seconds: float
    where: str


@dataclass
class Service:
    """An order service: ``place`` one order, ``close`` it, and (with a dead-letter queue)
    ``drain`` its backlog once payments has recovered."""

    place: PlaceOrder
    close: Callable[[], None]
    drain: Callable[[], Drain] | None = None


def bare(payments: str, notifications: str) -> Service:
    client = httpx.Client(timeout=ATTEMPT_TIMEOUT)

    def place(order: str) -> str:
        try:
            charged = client.post(f"{payments}/charges", json={"order": order})
        except httpx.HTTPError:
            return "failed"
        if charged.status_code != 201:
            return "failed"
        try:
            client.post(f"{notifications}/notify", json={"order": order})
        except httpx.HTTPError:
            pass
        return "paid"

    return Service(place, client.close)


def naive(payments: str, notifications: str) -> Service:
    client = httpx.Client(timeout=ATTEMPT_TIMEOUT)

    def post(url: str, order: str) -> httpx.Response | None:
        for _ in range(4):
            try:
                response = client.post(url, json={"order": order})
            except httpx.HTTPError:
                time.sleep(0.01)
                continue
            if response.status_code < 500:
                return response
            time.sleep(0.01)
        return None

    def place(order: str) -> str:
        charged = post(f"{payments}/charges", order)
        if charged is None or charged.status_code != 201:
            return "failed"
        post(f"{notifications}/notify", order)
        return "paid"

    return Service(place, client.close)


def resilient(payments: str, notifications: str) -> Service:
    folder = Path(tempfile.mkdtemp(prefix="checkout-"))
    backlog = DeadLetterQueue(SQLiteStore(folder / "dead-letters.sqlite3", name="payments"))
    charging: dict[str, Any] = {
        "retry": Retry(6, backoff=Backoff(initial=0.02, maximum=0.2), budget=RetryBudget()),
        "breaker": CircuitBreaker("payments", failure_rate=0.5, minimum_calls=6, open_for=0.3),
        "attempt_timeout": ATTEMPT_TIMEOUT,
        "deadline": 2.0,  # the whole charge, retries included
        "origins_honour_keys": True,  # payments dedupes by Idempotency-Key (it is ours)
        "tracing": False,
    }
    charge_client = httpx.Client(transport=ResilientTransport(dead_letter=backlog, **charging))
    notify_client = httpx.Client(
        transport=ResilientTransport(retry=Retry(3, backoff=Backoff(initial=0.01)), tracing=False)
    )

    def place(order: str) -> str:
        try:
            charged = charge_client.post(f"{payments}/charges", json={"order": order})
        except (CircuitOpenError, httpx.HTTPError) as exc:
            # Payments down (the breaker open), or the outcome unknown (timed out, cut off):
            # the transport parked the charge, with its key, for a replay once payments is back.
            return "queued" if parked_entry(exc) is not None else "failed"
        if charged.status_code != 201:
            # 5xx: payments shed load, crashed or ran out of time (it may have charged); 409:
            # an earlier attempt of this charge (same key) is still running there. Either way
            # the transport parked it, with its key: the replay charges it later, and payments
            # replays instead of charging twice. Only a definite refusal (4xx) fails the order.
            return "queued" if parked_entry(charged) is not None else "failed"
        try:  # best effort: the order is paid either way
            notify_client.post(f"{notifications}/notify", json={"order": order})
        except httpx.HTTPError:
            pass
        return "paid"

    def drain() -> Drain:
        parked = backlog.depth().ready
        started = time.monotonic()
        charged = 0
        # A client of its own: a background job, not a customer waiting, so it allows each
        # charge 2 s instead of 0.1 s; the standard breaker and retry budget keep it from
        # storming payments should it fall over again. Same keys, same payments.
        transport = ResilientTransport(attempt_timeout=2.0, origins_honour_keys=True, tracing=False)
        with httpx.Client(transport=transport) as replayer:
            for _ in range(10):  # a run visits each entry once; bounded, like every loop here
                charged += replay(replayer, backlog, max_time=60.0).succeeded
                if backlog.depth().ready == 0:
                    break
        return Drain(parked, charged, backlog.depth().ready, time.monotonic() - started, "SQLite")

    def close() -> None:
        charge_client.close()
        notify_client.close()
        backlog.close()
        shutil.rmtree(folder, ignore_errors=True)

    return Service(place, close, drain)


@dataclass
class Row:
    """What one order service achieved, and what it cost payments."""

    name: str
    outcomes: Counter[str]
    duplicates: int  # extra charges of an order already charged
    unknown: int  # charged, but the order service believes the order failed
    requests: int  # requests payments received
    notified: int
    elapsed: float
    transitions: list[str]
    orders: int = ORDERS
    drain: Drain | None = None  # the dead-letter backlog, charged after payments recovered
    lost: int = 0  # orders neither charged nor kept to be charged later

    @property
    def paid(self) -> int:
        """Orders paid, at once or by the replay of the backlog."""
        return self.outcomes["paid"] + (self.drain.charged if self.drain else 0)

    def __str__(self) -> str:
        line = (
            f"{self.name:<15} {self.outcomes['paid']:>5} {self.outcomes['queued']:>7} "
            f"{self.outcomes['failed']:>7} {self.duplicates:>10} {self.unknown:>15} "
            f"{self.requests:>9} {self.notified:>9} {self.elapsed:>6.1f}s"
        )
        line += f"   breaker: {' '.join(self.transitions)}" if self.transitions else ""
        drain = self.drain
        if drain is not None:
            line += (
                f"\n{'':<15} dead letters: {drain.parked} charges parked ({drain.where}); "
                f"payments recovered, a replay charged {drain.charged} in {drain.seconds:.2f}s"
                f"\n{'':<15} paid {self.paid} of {self.orders}, duplicates {self.duplicates}, "
                f"lost {self.lost}, left in the queue {drain.left}"
            )
        return line


def run(
    name: str,
    build: Callable[[str, str], Service],
    orders: int = ORDERS,
    outage: range = OUTAGE,
) -> Row:
    bank = Bank()
    payments = Payments(random.Random(7), outage=outage)
    notifications = Notifications(random.Random(11))
    outcomes: Counter[str] = Counter()
    transitions: list[str] = []

    def note(event: Event) -> None:
        if isinstance(event, CircuitStateChanged):
            transitions.append(f"{event.old}->{event.new}")

    unsubscribe = subscribe(note)
    started = time.monotonic()
    try:
        with (
            serve_asgi(bank.app()) as bank_url,
            serve_asgi(payments.app(), log_level="critical") as pay_url,  # crashes are the plan
            serve_wsgi(notifications.app()) as note_url,
        ):
            payments.bank = bank_url
            service = build(pay_url, note_url)
            drained = None
            try:
                for number in range(orders):
                    time.sleep(PAUSE)
                    payments.order = number
                    outcomes[service.place(f"order-{number}")] += 1
                elapsed = time.monotonic() - started
                if service.drain is not None:
                    payments.recovered = True
                    drained = service.drain()
            finally:
                service.close()
    finally:
        unsubscribe()
    duplicates = sum(count - 1 for count in bank.charges.values() if count > 1)
    paid = outcomes["paid"] + (drained.charged if drained else 0)
    waiting = drained.left if drained else outcomes["queued"]
    return Row(
        name,
        outcomes,
        duplicates,
        unknown=len(bank.charges) - paid,
        requests=payments.received,
        notified=notifications.sent,
        elapsed=elapsed,
        transitions=transitions,
        orders=orders,
        drain=drained,
        lost=orders - len(bank.charges) - min(waiting, orders - len(bank.charges)),
    )


def main() -> None:
    print(__doc__.split("\n\n")[0])
    print(f"{ORDERS} orders; payments down for orders {OUTAGE.start}-{OUTAGE.stop - 1}\n")
    print(
        f"{'order service':<15} {'paid':>5} {'queued':>7} {'failed':>7} {'duplicates':>10} "
        f"{'charged, unpaid':>15} {'pay reqs':>9} {'notified':>9} {'time':>7}"
    )
    for name, build in (("bare", bare), ("naive retries", naive), ("resilience", resilient)):
        print(run(name, build), flush=True)
    print(
        "\nduplicates: extra bank charges of one order; charged, unpaid: charged by the bank, but\n"
        "the order service believes it failed (a customer charged for an order marked failed);\n"
        "queued: parked in the dead-letter queue with its key, charged by the replay once\n"
        "payments recovered; lost: neither charged nor kept to be charged."
    )


if __name__ == "__main__":
    main()
