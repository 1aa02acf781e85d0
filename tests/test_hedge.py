"""Hedge's shells in every colour (threads, asyncio tasks, a trio nursery), on a fake clock:
the race rules of test_hedge_race.py, as callers see them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from resilience import Deadline, Hedge, HedgeSent, Pipeline, remaining
from resilience.testing import EventRecorder, FakeClock
from tests.conftest import Colour, wait_until

WAIT = 10.0  # the bound on every synchronisation wait: a bug fails the test instead of hanging

Step = tuple[Any, ...]


class Copies:
    """A function to hedge whose copy number n (from 0) plays ``scripts[n]``, step by step.

    Steps: ``("advance", s)`` moves the fake clock; ``("hang",)`` waits — a thread until the
    test calls ``release()``, a coroutine until it is cancelled; ``("stubborn", v)`` is a hang
    that returns ``v`` when cancelled; ``("deadline",)`` records ``remaining()``;
    ``("return", v)`` / ``("raise", e)`` end the copy.
    """

    def __init__(self, colour: Colour, clock: FakeClock, *scripts: list[Step]) -> None:
        self.colour = colour
        self.clock = clock
        self.scripts = scripts
        self.lock = threading.Lock()
        self.started_at: list[float] = []
        self.cancelled: list[int] = []
        self.deadlines: list[float | None] = []
        self.released = threading.Event()

    @property
    def started(self) -> int:
        return len(self.started_at)

    def release(self) -> None:
        self.released.set()

    def _begin(self) -> list[Step]:
        with self.lock:
            self.started_at.append(self.clock.now())
            return self.scripts[len(self.started_at) - 1]

    def function(self) -> Callable[..., Any]:
        """The copy as a plain function or a coroutine function, as the colour says."""
        if not self.colour.is_async:
            return self._sync

        async def copy() -> Any:
            return await self._async()

        return copy

    def _plain(self, step: Step) -> tuple[bool, Any]:
        """Play a step that does not wait; ``(True, value)`` when it ends the copy."""
        if step[0] == "advance":
            self.clock.advance(step[1])
        elif step[0] == "deadline":
            self.deadlines.append(remaining())
        elif step[0] in ("return", "stubborn"):
            return True, step[1]
        elif step[0] == "raise":
            raise step[1]
        return False, None

    def _sync(self) -> Any:
        for step in self._begin():
            if step[0] in ("hang", "stubborn"):
                assert self.released.wait(WAIT), "a hanging copy was never released"
            ended, value = self._plain(step)
            if ended:
                return value
        raise AssertionError("a script ends with return or raise")

    async def _async(self) -> Any:
        script = self._begin()
        number = self.started - 1
        for step in script:
            if step[0] in ("hang", "stubborn"):
                try:
                    await anyio.sleep_forever()
                except anyio.get_cancelled_exc_class():
                    self.cancelled.append(number)
                    if step[0] == "hang":
                        raise
            else:
                await self.colour.checkpoint()
            ended, value = self._plain(step)
            if ended:
                return value
        raise AssertionError("a script ends with return or raise")


def call(colour: Colour, policy: Hedge | Pipeline, copies: Copies) -> Any:
    """Call the hedged copies once, in the colour's way."""
    guarded = policy(copies.function())
    if colour.is_async:
        return colour.run(guarded)
    return guarded()


def refusing_bad(clock: FakeClock, discarded: list[Any], delay: float, max_hedges: int) -> Hedge:
    """A Hedge that refuses results starting with "bad" and discards into ``discarded``."""
    return Hedge(
        delay,
        max_hedges=max_hedges,
        on_result=lambda value: value.startswith("bad"),
        discard=discarded.append,
        clock=clock,
    )


# -- who starts when, who wins -----------------------------------------------------------------


def test_a_slow_call_gets_a_second_copy_whose_answer_wins(colour: Colour, clock: FakeClock) -> None:
    """After ``delay`` without an answer the next copy starts; its answer wins; the slow copy is
    cancelled (coroutines) or abandoned and its late value discarded (threads)."""
    discarded: list[Any] = []
    copies = Copies(
        colour,
        clock,
        [("advance", 0.1), ("hang",), ("return", "slow")],
        [("return", "fast")],
    )
    with EventRecorder() as recorder:
        assert call(colour, Hedge(0.1, clock=clock, discard=discarded.append), copies) == "fast"
    assert copies.started_at == [1000.0, 1000.1]
    assert [event.attempt for event in recorder.of(HedgeSent)] == [2]
    if colour.is_async:
        assert copies.cancelled == [0]
        assert discarded == []
    else:
        copies.release()
        wait_until(lambda: discarded == ["slow"], "the late value to be discarded")


def test_a_fast_call_sends_no_hedge(colour: Colour, clock: FakeClock) -> None:
    """A call answering before the delay is the only copy."""
    copies = Copies(colour, clock, [("return", 7)])
    with EventRecorder() as recorder:
        assert call(colour, Hedge(1.0, clock=clock), copies) == 7
    assert copies.started == 1
    assert recorder.of(HedgeSent) == []


def test_a_failing_copy_starts_the_next_at_once_and_all_failing_raises_the_first(
    colour: Colour, clock: FakeClock
) -> None:
    """A failure launches the next copy without waiting; if all fail, the first error rises."""
    copies = Copies(
        colour, clock, *[[("raise", ConnectionError(f"copy {n}"))] for n in range(1, 4)]
    )
    with pytest.raises(ConnectionError, match="copy 1"):
        call(colour, Hedge(60.0, max_hedges=2, clock=clock), copies)
    assert copies.started_at == [1000.0, 1000.0, 1000.0]  # nobody waited for the delay


def test_a_replacement_copy_gets_a_full_delay_before_the_next(
    colour: Colour, clock: FakeClock
) -> None:
    """When a copy fails, the copy started in its place is given the whole delay: the failed
    copy's own timer does not start a third one early."""
    copies = Copies(
        colour,
        clock,
        [("advance", 0.05), ("raise", ConnectionError("first"))],
        [("advance", 0.07), ("advance", 0.03), ("hang",), ("return", "late")],
        [("return", "third")],
    )
    assert call(colour, Hedge(0.1, max_hedges=2, clock=clock), copies) == "third"
    assert copies.started_at == pytest.approx([1000.0, 1000.05, 1000.15])
    copies.release()


def test_refused_results_lose_to_a_good_answer_and_are_discarded(
    colour: Colour, clock: FakeClock
) -> None:
    """A result matching ``on_result`` starts the next copy at once; the good answer wins and
    the refused one is discarded."""
    discarded: list[Any] = []
    hedge = refusing_bad(clock, discarded, delay=60.0, max_hedges=1)
    copies = Copies(colour, clock, [("return", "bad")], [("return", "good")])
    assert call(colour, hedge, copies) == "good"
    assert discarded == ["bad"]
    assert copies.started_at == [1000.0, 1000.0]


def test_when_every_copy_is_refused_the_last_refused_result_is_returned(
    colour: Colour, clock: FakeClock
) -> None:
    """With no good answer, the latest refused result is returned; the earlier is discarded."""
    discarded: list[Any] = []
    hedge = refusing_bad(clock, discarded, delay=60.0, max_hedges=2)
    copies = Copies(
        colour,
        clock,
        [("return", "bad 1")],
        [("raise", ConnectionError("2"))],
        [("return", "bad 3")],
    )
    assert call(colour, hedge, copies) == "bad 3"
    assert discarded == ["bad 1"]


def test_copies_see_the_callers_deadline(colour: Colour, clock: FakeClock) -> None:
    """Every copy runs in the caller's context: an enclosing Deadline is in force in each."""
    copies = Copies(
        colour,
        clock,
        [("deadline",), ("advance", 0.1), ("hang",), ("return", "slow")],
        [("deadline",), ("return", "fast")],
    )
    policy = Pipeline(Deadline(5.0, clock=clock), Hedge(0.1, clock=clock))
    assert call(colour, policy, copies) == "fast"
    assert copies.deadlines == pytest.approx([5.0, 4.9])
    copies.release()


def test_a_failing_predicate_raises_its_own_error(colour: Colour, clock: FakeClock) -> None:
    """An ``on_result`` that raises reaches the caller as it is (under trio too: not inside an
    exception group)."""

    def broken(value: object) -> bool:
        raise ValueError("predicate")

    copies = Copies(colour, clock, [("return", "x")])
    with pytest.raises(ValueError, match="predicate"):
        call(colour, Hedge(1.0, on_result=broken, clock=clock), copies)


def test_hedging_on_the_system_clock(colour: Colour) -> None:
    """On the real clock the delay is timed by the running library (a thread's queue wait, an
    asyncio timer, a trio timer task): the second copy answers."""
    clock = FakeClock()  # only records when copies start; the Hedge runs on the system clock
    copies = Copies(colour, clock, [("hang",), ("return", "slow")], [("return", "fast")])
    assert call(colour, Hedge(0.01), copies) == "fast"
    copies.release()


# -- what is cancelled and discarded, coroutines -----------------------------------------------


def test_cancelling_a_hedged_call_cancels_every_copy(
    async_colour: Colour, clock: FakeClock
) -> None:
    """Cancelling the caller cancels all copies in flight and discards the refused answer it
    held."""
    discarded: list[Any] = []
    hedge = refusing_bad(clock, discarded, delay=0.1, max_hedges=3)
    copies = Copies(
        async_colour,
        clock,
        [("return", "bad")],
        [("advance", 0.1), ("hang",)],
        [("hang",)],
    )
    guarded = hedge(copies.function())

    async def scenario() -> bool:
        with anyio.CancelScope() as caller:
            async with anyio.create_task_group() as group:
                group.start_soon(guarded)
                for _ in range(1000):
                    if len(copies.cancelled) + copies.started == 3:
                        break
                    await anyio.lowlevel.checkpoint()
                assert copies.started == 3
                caller.cancel()
        return caller.cancelled_caught

    assert async_colour.run(scenario) is True
    assert sorted(copies.cancelled) == [1, 2]
    assert discarded == ["bad"]


def test_a_value_a_cancelled_loser_returns_anyway_is_discarded(
    async_colour: Colour, clock: FakeClock
) -> None:
    """A losing copy that swallows its cancellation and returns has its value discarded."""
    discarded: list[Any] = []
    copies = Copies(
        async_colour,
        clock,
        [("advance", 0.1), ("stubborn", "late")],
        [("return", "fast")],
    )
    assert call(async_colour, Hedge(0.1, discard=discarded.append, clock=clock), copies) == "fast"
    assert copies.cancelled == [0]
    assert discarded == ["late"]


# -- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"delay": -1.0}, "delay"), ({"delay": 1.0, "max_hedges": 0}, "max_hedges")],
)
def test_bad_configuration_names_the_parameter(kwargs: dict[str, float], name: str) -> None:
    """Invalid settings fail at construction, naming the parameter."""
    with pytest.raises(ValueError, match=name):
        Hedge(**kwargs)  # type: ignore[arg-type]


def test_replace_changes_only_what_it_is_given(clock: FakeClock) -> None:
    """replace() builds a new Hedge with the same settings bar the ones named."""
    original = Hedge(0.2, max_hedges=2, clock=clock, name="orders")
    changed = original.replace(delay=0.5, name="orders[api]")
    assert (changed.delay, changed.max_hedges, changed.name) == (0.5, 2, "orders[api]")
    assert (original.delay, original.name) == (0.2, "orders")
    with pytest.raises(ValueError, match="delay"):
        original.replace(delay=-1.0)
