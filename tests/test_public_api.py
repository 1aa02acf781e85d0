"""The public surface: ``__all__`` is complete and sorted, README examples and the demo run."""

from __future__ import annotations

import ast
import importlib
import inspect
import pickle
import pkgutil
import random
import re
import runpy
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import resilience
import resilience.asgi
import resilience.wsgi
from resilience.stores import MemoryStore
from resilience.testing import FakeClock

ROOT = Path(__file__).resolve().parent.parent


def _public_modules() -> list[str]:
    """Every module users may import: no part of its dotted path starts with "_"."""
    found = ["resilience"]
    for info in pkgutil.walk_packages(resilience.__path__, "resilience."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            found.append(info.name)
    return sorted(found)


PUBLIC_MODULES = _public_modules()


def _exported(module: ModuleType) -> set[str]:
    """The public names a module offers: in a package's ``__init__`` every public name it
    binds but tools from outside the package (re-exporting is its job); in a plain module the
    public names it defines itself (``def``, ``class``, assignment), read from its source."""
    if hasattr(module, "__path__"):
        return {
            name
            for name, value in vars(module).items()
            if not name.startswith("_")
            and not isinstance(value, ModuleType)
            and getattr(value, "__module__", "resilience").startswith("resilience")
            and name not in {"annotations", "TYPE_CHECKING"}
        }
    tree = ast.parse(Path(module.__file__ or "").read_text())
    defined: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            defined.update(t.id for t in targets if isinstance(t, ast.Name))
    return {name for name in defined if not name.startswith("_")}


def _isort_style(name: str) -> tuple[int, str]:
    """Sort key of ruff's RUF022: CONSTANTS, then Classes, then functions."""
    return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)


def test_public_modules_are_found() -> None:
    """The walk finds the public modules (so the tests below cover something)."""
    assert {"resilience", "resilience.http", "resilience.stores", "resilience.testing"} <= set(
        PUBLIC_MODULES
    )


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_sorted_and_exactly_what_the_module_exports(name: str) -> None:
    """Each public module's ``__all__`` is sorted, every name in it resolves, and it lists
    every public name the module exports, nothing more and nothing less."""
    module = importlib.import_module(name)
    listed = list(module.__all__)
    assert listed in (sorted(listed), sorted(listed, key=_isort_style)), "__all__ is not sorted"
    for exported in listed:
        assert getattr(module, exported) is not None, exported  # lazy names resolve too
    assert _exported(module) - {"__version__"} == set(listed) - {"__version__"} - (
        set(listed) - set(vars(module))  # lazily loaded: not bound until first use
    )


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_public_classes_and_functions_report_their_public_module(name: str) -> None:
    """``__module__`` of an exported class or function is a public module, the one users
    import it from (reprs, tracebacks and docs say ``resilience.Retry``)."""
    module = importlib.import_module(name)
    for exported in module.__all__:
        value = getattr(module, exported)
        if isinstance(value, type) or inspect.isfunction(value):
            assert value.__module__ in PUBLIC_MODULES, (exported, value.__module__)
    assert repr(resilience.Retry) == "<class 'resilience.Retry'>"
    from resilience.stores import RedisStore

    assert RedisStore.__module__ == "resilience.stores"


def test_public_objects_pickle_through_their_public_module() -> None:
    """A class reporting a public module still pickles: the module has the name."""
    backoff = pickle.loads(pickle.dumps(resilience.Backoff(0.5, 2.0)))
    assert repr(backoff) == repr(resilience.Backoff(0.5, 2.0))
    event = resilience.RetryScheduled("r", 1, 0.5, "ValueError")
    assert pickle.loads(pickle.dumps(event)) == event


def test_every_public_name_resolves() -> None:
    """Each name in ``resilience.__all__`` is importable from the package."""
    for name in resilience.__all__:
        assert getattr(resilience, name) is not None


def _readme_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_readme_has_python_examples() -> None:
    """The README shows runnable Python examples (they are executed below)."""
    assert len(_readme_blocks()) >= 2


README_REDIS_URL = "redis://127.0.0.1:6379"  # a block using it gets the test's own redis-server


@pytest.mark.examples
@pytest.mark.parametrize("index", range(len(_readme_blocks())))
def test_readme_example_runs(index: int, request: pytest.FixtureRequest) -> None:
    """Every ```python block of the README runs as it is (one that talks to Redis on 6379
    talks to a redis-server of the tests instead, never the machine's)."""
    code = _readme_blocks()[index]
    if README_REDIS_URL in code:
        url = request.getfixturevalue("redis_server").url
        code = code.replace(README_REDIS_URL, url.rsplit("/", 1)[0])
    exec(compile(code, f"README.md[python block {index}]", "exec"), {"__name__": "readme"})


@pytest.mark.examples
def test_demo_absorbs_the_injected_faults(capsys: pytest.CaptureFixture[str]) -> None:
    """``make demo``'s script runs, and the resilient run shows no failed charge."""
    runpy.run_path(str(ROOT / "examples" / "flaky_payments.py"), run_name="__main__")
    out = capsys.readouterr().out
    resilient = next(line for line in out.splitlines() if line.startswith("resilient"))
    assert re.search(r"failed\s+0\b", resilient), resilient
    bare = next(line for line in out.splitlines() if line.startswith("bare"))
    assert not re.search(r"failed\s+0\b", bare), bare


def test_package_ships_py_typed() -> None:
    """``py.typed`` is in the package, so type checkers use our annotations."""
    assert (Path(resilience.__file__).parent / "py.typed").exists()


@pytest.mark.examples
def test_checkout_example_charges_every_order_exactly_once() -> None:
    """``make demo``'s checkout run for the resilient order service, over real HTTP: through
    503s, slow charges the caller gave up on, crashes after charging the bank and an outage,
    no order is charged twice or marked failed; the charges it could not finish are parked in
    a dead-letter queue and, once payments has recovered, a replay charges every one: the
    table shows paid 90 of 90, duplicates 0, lost 0, and the queue empty."""
    import sys

    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import checkout
    finally:
        sys.path.remove(str(ROOT / "examples"))
    row = checkout.run("resilience", checkout.resilient)
    assert row.outcomes["failed"] == 0
    assert row.outcomes["queued"] >= 15  # the outage was felt: its charges were parked
    assert row.drain is not None
    assert (row.drain.parked, row.drain.charged, row.drain.left) == (
        row.outcomes["queued"], row.outcomes["queued"], 0,
    )  # fmt: skip
    assert (row.paid, row.duplicates, row.unknown, row.lost) == (90, 0, 0, 0)
    assert "paid 90 of 90, duplicates 0, lost 0, left in the queue 0" in str(row)


@pytest.mark.examples
def test_telemetry_example_prints_attempt_spans_and_metrics() -> None:
    """``examples/telemetry.py`` (in its own process: it installs global OTel providers) prints a
    CLIENT span per attempt, the retry event on the order span, and the metrics."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "telemetry.py")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    )
    out = done.stdout
    assert out.count("span CLIENT") == 8  # 4 orders x (429, then 201)
    assert out.count("'http.request.resend_count': 1") == 4
    assert out.count("events=['resilience.retry.scheduled']") == 4
    assert "http.client.request.duration" in out and "resilience.retry.attempts" in out


# -- one vocabulary ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "old", "new"),
    [
        (lambda: resilience.CircuitBreaker(failure_on=ValueError), "failure_on", "on"),
        (
            lambda: resilience.CircuitBreaker(failure_on_result=bool),
            "failure_on_result",
            "on_result",
        ),
        (lambda: resilience.RateLimiter(5, key="api"), "key", "name"),
        (lambda: resilience.CircuitBreaker().replace(failure_on=ValueError), "failure_on", "on"),
    ],
)
def test_a_renamed_keyword_is_refused_naming_its_successor(
    build: Callable[[], object], old: str, new: str
) -> None:
    """An old keyword raises TypeError saying which keyword replaced it."""
    with pytest.raises(TypeError, match=f"takes {new}= where it took {old}= "):
        build()


def test_an_unknown_keyword_is_still_a_plain_type_error() -> None:
    """A keyword that never existed is refused as Python would refuse it."""
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        resilience.CircuitBreaker(colour="red")  # type: ignore[arg-type]


def test_names_default_to_the_kind() -> None:
    """An unnamed policy is named after its kind (in events, metrics and errors)."""
    assert resilience.CircuitBreaker().name == "circuit_breaker"
    assert resilience.RetryBudget().name == "retry_budget"
    assert resilience.RateLimiter(5).name == "rate_limiter"
    assert resilience.Retry().name == "retry"
    assert resilience.Bulkhead(1).name == "bulkhead"
    assert resilience.Timeout(1.0).name == "timeout"
    assert resilience.Deadline(1.0).name == "deadline"
    assert resilience.Fallback(None).name == "fallback"
    assert resilience.Hedge(0.1).name == "hedge"
    assert resilience.AdaptiveConcurrency().name == "adaptive_concurrency"
    assert resilience.AdaptiveThrottle().name == "adaptive_throttle"
    assert resilience.Pipeline(resilience.Retry()).name == "pipeline"


def _redis_store() -> Any:
    """A RedisStore over a real redis-py client that is never used: construction does no I/O,
    and the policies below are refused before any."""
    redis = pytest.importorskip("redis")
    from resilience.stores import RedisStore

    return RedisStore(redis.Redis(host="127.0.0.1", port=1))


@pytest.mark.parametrize(
    ("build", "kind"),
    [
        (lambda store: resilience.CircuitBreaker(store=store), "circuit breaker"),
        (lambda store: resilience.RetryBudget(store=store), "retry budget"),
        (lambda store: resilience.RateLimiter(5, store=store), "rate limiter"),
    ],
)
def test_a_policy_shared_through_redis_must_be_named(
    build: Callable[[Any], object], kind: str
) -> None:
    """Shared state meets under the policy's name: an unnamed breaker, budget or limiter on a
    RedisStore is refused at construction, saying why (unrelated services would share it)."""
    with pytest.raises(ValueError, match=f"^name is required for a {kind} whose state is shared"):
        build(_redis_store())
    with pytest.raises(ValueError, match="trip each other"):
        build(_redis_store())


def _async_redis_store() -> Any:
    """A RedisStore over a redis.asyncio client that is never used (the ASGI middleware's)."""
    redis = pytest.importorskip("redis")
    from resilience.stores import RedisStore

    return RedisStore(redis.asyncio.Redis(host="127.0.0.1", port=1))


class _RecordsElsewhere:
    """A third-party idempotency store (not a MemoryStore): shared, as far as anyone knows."""

    def __init__(self) -> None:
        self._inner = MemoryStore()

    def idempotency_claim(self, *args: Any) -> Any:
        return self._inner.idempotency_claim(*args)

    def idempotency_renew(self, *args: Any) -> Any:
        return self._inner.idempotency_renew(*args)

    def idempotency_complete(self, *args: Any) -> Any:
        return self._inner.idempotency_complete(*args)

    def idempotency_release(self, *args: Any) -> Any:
        return self._inner.idempotency_release(*args)


def _asgi_app(scope: Any, receive: Any, send: Any) -> Any:  # never called
    raise AssertionError


def _wsgi_app(environ: Any, start_response: Any) -> Any:  # never called
    raise AssertionError


@pytest.mark.parametrize(
    "build",
    [
        lambda: resilience.asgi.IdempotencyMiddleware(_asgi_app, store=_async_redis_store()),
        lambda: resilience.wsgi.IdempotencyMiddleware(_wsgi_app, store=_redis_store()),
    ],
    ids=["asgi", "wsgi"],
)
def test_idempotency_on_a_shared_store_must_be_named(build: Callable[[], object]) -> None:
    """The middleware's records meet under its name: unnamed on a RedisStore it is refused at
    construction, saying why (two services on one Redis would replay each other's responses),
    in the words the other policies use."""
    with pytest.raises(
        ValueError, match=r"^name is required for an idempotency middleware whose state is shared"
    ) as caught:
        build()
    assert "replay of the other's response" in str(caught.value)


def test_idempotency_on_a_store_of_its_own_making_must_be_named() -> None:
    """Any store but a MemoryStore may be shared, as for the other policies; named, it runs."""
    with pytest.raises(ValueError, match=r"^name is required for an idempotency middleware"):
        resilience.wsgi.IdempotencyMiddleware(_wsgi_app, store=_RecordsElsewhere())
    named = resilience.wsgi.IdempotencyMiddleware(
        _wsgi_app, store=_RecordsElsewhere(), name="orders"
    )
    assert named.rules.name == "orders"


def test_unshared_idempotency_keeps_its_default_name() -> None:
    """In memory (the default, or a MemoryStore), the name may be left out: "idempotency"."""
    asgi = resilience.asgi.IdempotencyMiddleware(_asgi_app)
    wsgi = resilience.wsgi.IdempotencyMiddleware(_wsgi_app, store=MemoryStore())
    assert asgi.rules.name == wsgi.rules.name == "idempotency"


def test_a_named_policy_on_redis_is_accepted() -> None:
    """With a name, the same constructions succeed (still without I/O)."""
    store = _redis_store()
    assert resilience.CircuitBreaker(name="payments", store=store).name == "payments"
    assert resilience.RetryBudget(name="payments", store=store).name == "payments"
    assert resilience.RateLimiter(5, name="payments", store=store).name == "payments"
    wsgi = resilience.wsgi.IdempotencyMiddleware(_wsgi_app, store=store, name="payments")
    assert wsgi.rules.name == "payments"
    asgi_store = _async_redis_store()
    asgi = resilience.asgi.IdempotencyMiddleware(_asgi_app, store=asgi_store, name="payments")
    assert asgi.rules.name == "payments"


def test_replace_changes_what_it_is_given_and_keeps_the_rest() -> None:
    """``replace(**changes)`` builds a new object from the old one's settings."""
    rng = random.Random(7)
    backoff = resilience.Backoff(0.5, 8.0, 3.0, "equal", rng=rng)
    changed = backoff.replace(maximum=20.0)
    assert (changed.initial, changed.maximum, changed.multiplier, changed.jitter) == (
        0.5,
        20.0,
        3.0,
        "equal",
    )
    assert backoff.maximum == 8.0
    retry = resilience.Retry(5, on=ValueError, backoff=backoff, name="charge")
    more = retry.replace(attempts=7)
    assert (more.attempts, more.name, more.backoff) == (7, "charge", backoff)
    breaker = resilience.CircuitBreaker(name="api", failure_rate=0.25, minimum_calls=4)
    assert repr(breaker.replace(name="api2")) == "CircuitBreaker('api2', state='closed')"
    bulkhead = resilience.Bulkhead(3, name="db").replace(max_concurrent=5)
    assert (bulkhead.max_concurrent, bulkhead.name) == (5, "db")
    budget = resilience.RetryBudget(ratio=0.5, name="b").replace(window=3.0)
    assert (budget.ratio, budget.window, budget.name) == (0.5, 3.0, "b")


def test_replace_validates_like_the_constructor() -> None:
    """A bad value or an unknown keyword given to ``replace`` fails as it would at construction."""
    with pytest.raises(ValueError, match=r"^maximum must be >= initial"):
        resilience.Backoff(1.0, 2.0).replace(maximum=0.5)
    with pytest.raises(TypeError, match="unexpected keyword argument 'tries'"):
        resilience.Retry().replace(tries=2)


def _policy_classes() -> list[type]:
    """Every public policy class (``Policy`` subclasses exported by ``resilience``)."""
    return [
        value
        for value in vars(resilience).values()
        if isinstance(value, type) and issubclass(value, resilience.Policy)
        if value is not resilience.Policy
    ]


def test_every_policy_has_replace() -> None:
    """``replace(**changes)`` is on every public policy class and frozen option object, not on
    some."""
    classes = [*_policy_classes(), resilience.Backoff, resilience.RetryBudget]
    assert len(classes) >= 13  # Timeout, Deadline, Fallback, RateLimiter, Pipeline among them
    assert [cls.__name__ for cls in classes if not hasattr(cls, "replace")] == []


@pytest.mark.parametrize("kind", [resilience.Timeout, resilience.Deadline])
def test_replace_on_time_budgets(kind: type[resilience.Timeout]) -> None:
    """A timeout's or deadline's copy keeps its kind, clock and name, changes what it is
    given, is validated as a new one, and leaves the original alone."""
    clock = FakeClock()
    original = kind(2.0, clock=clock, name="lookup")
    copy = original.replace(seconds=0.5)
    assert type(copy) is kind and copy is not original
    assert (copy.seconds, copy.name, copy._clock) == (0.5, "lookup", clock)
    assert (original.seconds, original.name) == (2.0, "lookup")
    assert kind(1.0).replace(clock=clock).name == kind.__name__.lower()
    with pytest.raises(ValueError, match=r"^seconds must be"):
        original.replace(seconds=-1.0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'timeout'"):
        original.replace(timeout=1.0)


def test_replace_on_fallback() -> None:
    """A fallback's copy keeps ``on`` and its name; a ``value`` or ``handler`` given takes the
    place of the one it had; giving both is refused as at construction."""
    original = resilience.Fallback("cached", on=KeyError, name="menu")
    by_handler = original.replace(handler=lambda exc: f"no {exc.args[0]}")
    assert by_handler.name == "menu"
    assert by_handler.call(_raise, KeyError("soup")) == "no soup"
    with pytest.raises(ValueError, match="boom"):  # on=KeyError kept
        by_handler.call(_raise, ValueError("boom"))
    assert by_handler.replace(value=0).call(_raise, KeyError("x")) == 0
    assert original.call(_raise, KeyError("soup")) == "cached"
    assert original.replace(name="menu2").call(_raise, KeyError("x")) == "cached"
    with pytest.raises(ValueError, match="exactly one of value and handler"):
        original.replace(value=1, handler=str)
    with pytest.raises(TypeError, match="handler must be callable"):
        original.replace(handler="not callable")


def _raise(error: Exception) -> None:
    raise error


def test_replace_on_rate_limiter() -> None:
    """A limiter's copy keeps its settings, gets buckets of its own (no store given), takes a
    changed rate's default burst unless a burst was given, and is validated as a new one."""
    clock = FakeClock()
    original = resilience.RateLimiter(10, per=2.0, max_wait=0.5, name="api", clock=clock)
    copy = original.replace(rate=4)
    assert (copy.rate, copy.per, copy.max_wait, copy.name) == (4.0, 2.0, 0.5, "api")
    assert (copy.burst, original.burst) == (3, 9)  # one period's worth of the new rate
    assert original.replace(rate=4, burst=1).burst == 1
    assert resilience.RateLimiter(10, burst=2).replace(rate=20).burst == 2
    for _ in range(4):
        assert copy.try_acquire().allowed
    assert not copy.try_acquire().allowed
    assert original.try_acquire().remaining == 9  # the original's bucket was not touched
    with pytest.raises(ValueError, match=r"^rate must be a number > 0"):
        original.replace(rate=0)
    with pytest.raises(TypeError, match="takes name= where it took key="):
        original.replace(key="api")


def test_replace_on_a_rate_limiter_sharing_a_store() -> None:
    """On the store it was given, a copy under the same name shares the original's bucket (as
    replicas on one store do); under another name it has its own."""
    store = MemoryStore(clock=FakeClock())
    original = resilience.RateLimiter(2, burst=1, name="api", store=store)
    assert original.try_acquire().allowed
    assert original.replace(max_wait=1.0).try_acquire().allowed
    assert not original.try_acquire().allowed
    assert original.replace(name="other").try_acquire().allowed


def test_replace_on_pipeline() -> None:
    """A pipeline's copy has the same policies and the options given; its name is validated
    as a new pipeline's."""
    retry, breaker = resilience.Retry(), resilience.CircuitBreaker()
    original = resilience.Pipeline(retry, breaker, name="checkout")
    copy = original.replace(tracing=False)
    assert copy.policies == (retry, breaker) and copy is not original
    assert (copy.name, copy.tracing, original.tracing) == ("checkout", False, True)
    assert original.replace(name=None).name == "pipeline"
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        original.replace(name="")
    with pytest.raises(TypeError, match="tracing must be True or False"):
        original.replace(tracing="yes")
