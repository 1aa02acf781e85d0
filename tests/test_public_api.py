"""The public surface: ``__all__`` is complete and sorted, README examples and the demo run."""

from __future__ import annotations

import re
import runpy
import sys
from pathlib import Path

import pytest

import resilience
import resilience.testing

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("module", [resilience, resilience.testing])
def test_all_is_sorted_and_complete(module: object) -> None:
    """``__all__`` lists every public name the module defines, sorted, and nothing missing."""
    exported = list(module.__all__)  # type: ignore[attr-defined]
    assert exported == sorted(exported)
    public = {
        name
        for name in vars(module)
        if not name.startswith("_") and not isinstance(getattr(module, name), type(sys))
    }
    assert public - {"annotations"} == set(exported) - {"__version__"}


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


@pytest.mark.parametrize("index", range(len(_readme_blocks())))
def test_readme_example_runs(index: int) -> None:
    """Every ```python block of the README runs as it is."""
    code = _readme_blocks()[index]
    exec(compile(code, f"README.md[python block {index}]", "exec"), {"__name__": "readme"})


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


def test_checkout_example_charges_every_order_at_most_once() -> None:
    """The checkout example over real HTTP (a shorter run): through 503s, slow charges the
    caller gave up on, crashes after charging the bank and an outage, the resilient order
    service never has an order charged twice and never marks a charged order failed; every
    order is paid or queued."""
    import sys

    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import checkout
    finally:
        sys.path.remove(str(ROOT / "examples"))
    row = checkout.run("resilience", checkout.resilient, orders=30, outage=range(10, 16))
    assert row.duplicates == 0
    # A queued order may already be charged (payments crashed after charging the bank and the
    # open breaker refused the retry); charged later with the same key, it replays. None of the
    # paid or failed orders is charged wrongly.
    assert row.unknown <= row.outcomes["queued"]
    assert row.outcomes["failed"] == 0
    assert row.outcomes["paid"] + row.outcomes["queued"] == 30
    assert row.outcomes["queued"] >= 1  # the outage was felt, and absorbed


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
    assert out.count("span CLIENT") == 8  # 4 orders x (503, then 201)
    assert out.count("'http.request.resend_count': 1") == 4
    assert out.count("events=['resilience.retry.scheduled']") == 4
    assert "http.client.request.duration" in out and "resilience.retry.attempts" in out
