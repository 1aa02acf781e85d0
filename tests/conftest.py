"""Shared fixtures: every shell test runs in each colour (sync, asyncio, trio): ``colour``."""

from __future__ import annotations

import asyncio
import functools
import socket
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import hypothesis
import pytest
import trio

from resilience import (
    BulkheadFullError,
    CircuitOpenError,
    ConcurrencyLimitedError,
    Policy,
    RateLimitedError,
    RejectedError,
    ThrottledError,
)
from resilience import _events as _events_module
from resilience.testing import FakeClock


class Script:
    """A callable that plays ``outcomes`` in order: exceptions are raised, values returned.

    The last outcome repeats once the script runs out. ``calls`` counts the calls.
    """

    def __init__(self, outcomes: Iterable[object]) -> None:
        self.outcomes = list(outcomes)
        assert self.outcomes, "a script needs at least one outcome"
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        outcome = self.outcomes[min(self.calls, len(self.outcomes) - 1)]
        self.calls += 1
        if isinstance(outcome, BaseException):
            # A fresh copy each time, so notes and tracebacks do not pile up on one object.
            raise outcome.__class__(*outcome.args)
        return outcome


# The five local refusals (RejectedError), each made fresh by its factory; tests parametrize
# over them with ``@pytest.mark.parametrize("rejection", REJECTIONS.values(), ids=REJECTIONS)``.
REJECTIONS: dict[str, Callable[[], RejectedError]] = {
    "circuit": lambda: CircuitOpenError("inner", 2.0),
    "bulkhead": lambda: BulkheadFullError("inner", 4),
    "rate": lambda: RateLimitedError("inner", 0.5),
    "concurrency": lambda: ConcurrencyLimitedError("inner", 4, 4, 0.25),
    "throttle": lambda: ThrottledError("inner", 0.75),
}


@dataclass(frozen=True)
class Colour:
    """Runs a policy around a plain behaviour as a sync function, or as a coroutine function
    under asyncio or trio."""

    name: str  # "sync", "asyncio" or "trio"

    @property
    def is_async(self) -> bool:
        return self.name != "sync"

    def run(self, coroutine_function: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Run ``coroutine_function(*args)`` to completion under this colour's library."""
        if self.name == "trio":
            return trio.run(coroutine_function, *args)
        return asyncio.run(coroutine_function(*args))

    async def checkpoint(self) -> None:
        """Yield to this colour's event loop once."""
        if self.name == "trio":
            await trio.lowlevel.checkpoint()
        else:
            await asyncio.sleep(0)

    def wrap(self, policy: Policy, behaviour: Callable[..., Any]) -> Callable[..., Any]:
        """Decorate ``behaviour`` with ``policy`` in this colour; return a plain callable."""
        if not self.is_async:
            return policy(behaviour)

        async def coroutine_function(*args: Any, **kwargs: Any) -> Any:
            await self.checkpoint()
            return behaviour(*args, **kwargs)

        decorated = policy(coroutine_function)

        @functools.wraps(behaviour)
        def run(*args: Any, **kwargs: Any) -> Any:
            return self.run(functools.partial(decorated, *args, **kwargs))

        return run


COLOURS = ["sync", "asyncio", "trio"]


@pytest.fixture(params=COLOURS)
def colour(request: pytest.FixtureRequest) -> Colour:
    """Every colour of every shell: the same test runs against sync code, and against async code
    under asyncio and under trio."""
    return Colour(request.param)


@pytest.fixture(params=COLOURS[1:])
def async_colour(request: pytest.FixtureRequest) -> Colour:
    """The async colours only, for tests of what only coroutines do (cancellation)."""
    return Colour(request.param)


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll (bounded) until ``condition()`` holds: waiting on another thread's state, not on
    time; a bug fails the test after about ten seconds instead of hanging it."""
    for _ in range(10_000):
        if condition():
            return
        threading.Event().wait(0.001)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock starting at 1000.0 s, so tests never wait on the wall clock."""
    return FakeClock(start=1000.0)


@pytest.fixture
def script() -> Callable[[Iterable[object]], Script]:
    return Script


# Traced transports and pipelines subscribe the default OpenTelemetry listeners on first use;
# do it before any test so that the check below sees them in its "before".
_events_module.observer()


@pytest.fixture(autouse=True)
def _no_leftover_listeners() -> Iterator[None]:
    """A test that subscribes must unsubscribe: listeners are process-global."""
    from resilience import _events

    before = _events.listeners
    yield
    assert _events.listeners == before, "a test left an event listener subscribed"


@pytest.fixture(autouse=True)
def _servers_are_marked(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that serves on a socket says so (``@pytest.mark.server``), so that `make check`
    leaves it out: one that listens without the mark fails, naming the address."""
    node = request.node
    if node.get_closest_marker("server") or node.get_closest_marker("examples"):
        yield
        return
    listened: list[object] = []
    original = socket.socket.listen

    def listen(self: socket.socket, *args: Any) -> None:
        listened.append(self.getsockname())
        original(self, *args)

    socket.socket.listen = listen  # type: ignore[method-assign]
    try:
        yield
    finally:
        socket.socket.listen = original  # type: ignore[method-assign]
    if listened:
        pytest.fail(
            f"{node.nodeid} listened on {listened[0]} without @pytest.mark.server "
            "(the marker lets `make check` leave out the tests that start servers)"
        )


from tests.http_server import (  # noqa: E402, F401  (fixtures)
    driver,
    http_server,
    http_server_session,
)
from tests.redis_server import (  # noqa: E402, F401  (fixtures)
    close_redis_clients,
    redis_cluster,
    redis_server,
    redis_server_session,
)

# -- markers: what a test starts, so `make check` can leave it out -----------------------------
# Registered in pyproject.toml (--strict-markers). A test using one of these fixtures is marked
# here; a test that starts a server or runs an example by itself carries its mark explicitly.
_MARKED_BY_FIXTURE = {
    "redis": {"redis_server", "redis_server_session", "redis_cluster"},
    "server": {"http_server", "http_server_session"},
}


# `make check` (the quick loop) runs with --hypothesis-profile=check: every property test runs,
# on fewer examples; `make test` and CI run each with the examples it asks for.
hypothesis.settings.register_profile("check", max_examples=10)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by the servers its fixtures start (directly or through other fixtures);
    under the "check" profile, cap the examples of property tests that set their own."""
    quick = getattr(hypothesis.settings, "_current_profile", None) == "check"
    cap = hypothesis.settings.get_profile("check").max_examples
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for marker, fixtures in _MARKED_BY_FIXTURE.items():
            if used & fixtures:
                item.add_marker(marker)
        test = getattr(item, "obj", None)
        chosen = getattr(test, "_hypothesis_internal_use_settings", None)  # set by @settings
        if quick and chosen is not None and chosen.max_examples > cap:
            capped = hypothesis.settings(chosen, max_examples=cap)
            test._hypothesis_internal_use_settings = capped  # type: ignore[union-attr]
