"""The fleet simulator's world: a discrete-event loop on ``FakeClock``, services and users.

Time is ``FakeClock`` time: events wait in a heap and ``run`` advances the clock to each one
before running it (ties in the order they were scheduled), so one seed always gives one
history. The policies the clients use (``benchmarks._fleet_clients``) read the same clock.

The fleet: users send requests to a client tier; each tier calls the next through a client
(one per hop); the last tier calls the leaf, a database-like server with a fixed number of
workers, a FIFO queue and a service-time distribution. Middle tiers take ``WORK`` of their own
per request and accept at most ``MAX_CONCURRENT`` requests at once (a thread pool); each
network hop takes ``NET`` one way. Timed-out callers do not cancel work below them: a server
finishes what it started, unless the request carries a deadline that has passed.

To keep the event count down, a request's arrival is one event that carries the round trip's
network time and the middle tier's own work (``Target.delay``); replies are delivered at once.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from resilience.testing import FakeClock

__all__ = [
    "NET",
    "UNREACHABLE",
    "Leaf",
    "Middle",
    "Outcome",
    "Reply",
    "Sim",
    "Target",
    "Users",
]

NET = 0.0005  # one-way network latency of a hop, seconds
WORK = 0.0005  # a middle tier's own work per request, seconds
MAX_CONCURRENT = 512  # requests a middle tier serves at once; beyond, it answers 503 at once
REFUSED_AFTER = 0.001  # how long a connection to a down leaf takes to fail

# Statuses a server answers with.
OK = "ok"
ERROR = "error"  # 5xx: it (or something below it) failed
OVERLOADED = "overloaded"  # 503: refused to protect itself (queue full, limit, breaker open)
EXPIRED = "expired"  # the request's deadline had passed: dropped without work
UNREACHABLE = "unreachable"  # no answer: the connection was refused or reset (the leaf is down)

Reply = Callable[[str], None]


class Target(Protocol):
    delay: float  # from the caller's send to the request's arrival, plus the reply's way back

    def receive(self, deadline: float | None, reply: Reply) -> None: ...


class _Event:
    __slots__ = ("args", "cancelled", "fn")

    def __init__(self, fn: Callable[..., object], args: tuple[object, ...]) -> None:
        self.fn = fn
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Sim:
    """The event loop: ``at(delay, fn, *args)`` schedules, ``run(until)`` advances.

    Events run in time order (ties in the order they were scheduled); before each one the
    ``FakeClock`` that every policy core reads is advanced to its time.
    """

    def __init__(self, seed: str) -> None:
        self.clock = FakeClock(start=0.0)
        self.seed = seed
        self._heap: list[tuple[float, int, _Event]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self.clock.now()

    def at(self, delay: float, fn: Callable[..., object], *args: object) -> _Event:
        """Run ``fn(*args)`` ``delay`` seconds from now; return a handle with ``cancel()``."""
        event = _Event(fn, args)
        heapq.heappush(self._heap, (self.clock.now() + delay, next(self._order), event))
        return event

    def run(self, until: float) -> None:
        """Run every event due up to ``until``, then move the clock there."""
        heap, clock = self._heap, self.clock
        while heap and heap[0][0] <= until:
            when, _, event = heapq.heappop(heap)
            if event.cancelled:
                continue
            now = clock.now()
            if when > now:
                clock.advance(when - now)
            event.fn(*event.args)
        if until > clock.now():
            clock.advance(until - clock.now())

    def child_rng(self, name: str) -> random.Random:
        """A generator of its own for ``name``, derived from the seed (order-independent)."""
        return random.Random(f"{self.seed}/{name}")


class Leaf:
    """The database: ``workers`` serve a FIFO queue of at most ``max_queue``.

    Service times are lognormal with median ``median`` and shape ``sigma``, times ``slowdown``
    (a brownout). While ``down`` every connection is refused after ``REFUSED_AFTER``. A request
    whose propagated deadline has passed when a worker takes it is dropped unserved.
    """

    delay = 2 * NET

    def __init__(
        self,
        sim: Sim,
        *,
        workers: int,
        median: float,
        sigma: float,
        max_queue: int = 2000,
    ) -> None:
        self.sim = sim
        self.workers = workers
        self.median = median
        self.sigma = sigma
        self.max_queue = max_queue
        self.slowdown = 1.0
        self.down = False
        self.busy = 0
        self.queue: deque[tuple[float | None, Reply]] = deque()
        self.rng = sim.child_rng("leaf")
        self.received = 0  # every request that reached the leaf, refused ones included
        self.served = 0
        self.expired = 0

    @property
    def mean_service(self) -> float:
        return self.median * math.exp(self.sigma**2 / 2)

    @property
    def capacity(self) -> float:
        """Requests per second the workers serve when always busy (no brownout)."""
        return self.workers / self.mean_service

    def set_down(self, down: bool) -> None:
        self.down = down
        if down:  # the queue dies with the server
            queue, self.queue = self.queue, deque()
            for _, reply in queue:
                reply(UNREACHABLE)

    def receive(self, deadline: float | None, reply: Reply) -> None:
        self.received += 1
        if self.down:
            self.sim.at(REFUSED_AFTER, reply, UNREACHABLE)
        elif self.busy < self.workers and not self.queue:
            self._start(deadline, reply)
        elif len(self.queue) >= self.max_queue:
            reply(OVERLOADED)
        else:
            self.queue.append((deadline, reply))

    def _start(self, deadline: float | None, reply: Reply) -> None:
        self.busy += 1
        seconds = self.median * math.exp(self.sigma * self.rng.gauss(0.0, 1.0)) * self.slowdown
        self.sim.at(seconds, self._finish, reply)

    def _finish(self, reply: Reply) -> None:
        self.busy -= 1
        self.served += 1
        reply(OK)
        self._next()

    def _next(self) -> None:
        now = self.sim.now()
        queue = self.queue
        while queue and self.busy < self.workers and not self.down:
            deadline, reply = queue.popleft()
            if deadline is not None and now >= deadline:
                self.expired += 1
                reply(EXPIRED)
                continue
            self._start(deadline, reply)


class Client(Protocol):
    def call(self, deadline: float | None, done: Reply) -> None: ...


class Middle:
    """A middle tier: its own work, then one call below through ``client``."""

    delay = 2 * NET + WORK

    def __init__(self, sim: Sim, client: Client) -> None:
        self.sim = sim
        self.client = client
        self.in_flight = 0

    def receive(self, deadline: float | None, reply: Reply) -> None:
        if self.in_flight >= MAX_CONCURRENT:
            reply(OVERLOADED)
            return
        if deadline is not None and self.sim.now() >= deadline:
            reply(EXPIRED)
            return
        self.in_flight += 1
        self.client.call(deadline, functools.partial(self._done, reply))

    def _done(self, reply: Reply, status: str) -> None:
        self.in_flight -= 1
        reply(status if status in (OK, OVERLOADED) else ERROR)


@dataclass
class Outcome:
    """One user request: when it arrived, whether it succeeded in time, how long it took."""

    arrived: float
    ok: bool = False
    latency: float = math.inf
    settled: bool = False


@dataclass
class Users:
    """Poisson arrivals at ``rate(t)`` requests/s into the client tier, each with ``deadline``."""

    sim: Sim
    entry: Client
    rate: Callable[[float], float]
    deadline: float
    propagate: bool
    outcomes: list[Outcome] = field(default_factory=list)

    def start(self, until: float) -> None:
        self._rng = self.sim.child_rng("users")
        self._until = until
        self._arrive_next()

    def _arrive_next(self) -> None:
        now = self.sim.now()
        rate = self.rate(now)
        gap = self._rng.expovariate(rate) if rate > 0 else 0.1
        if now + gap < self._until:
            self.sim.at(gap, self._arrive)

    def _arrive(self) -> None:
        now = self.sim.now()
        self._arrive_next()
        if self.rate(now) <= 0:
            return
        outcome = Outcome(now)
        self.outcomes.append(outcome)
        deadline = now + self.deadline
        self.sim.at(self.deadline, self._give_up, outcome)
        self.entry.call(deadline if self.propagate else None, lambda s: self._done(outcome, s))

    def _give_up(self, outcome: Outcome) -> None:
        outcome.settled = True

    def _done(self, outcome: Outcome, status: str) -> None:
        if outcome.settled:
            return  # the user left already
        outcome.settled = True
        outcome.ok = status == OK
        outcome.latency = self.sim.now() - outcome.arrived
