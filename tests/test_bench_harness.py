"""The benchmark harness's progress lines, the plots ``python -m benchmarks --plots`` draws (the
fleet's included), the command line, and the launcher of the benchmarks' loopback servers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from benchmarks import _plots
from benchmarks.__main__ import main
from benchmarks._harness import Case, Steps, run_cases
from benchmarks._server import spawn
from benchmarks.fleet import SCENARIOS, run_all
from benchmarks.overload import CAPACITY, Run, _record, percentile


def test_each_round_prints_progress_and_the_table_is_recorded(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A run of 3 rounds prints a line per round on stderr, the last with the total time, and
    records one chart whose bars are the cases' medians, with their min-max."""
    _plots.begin("harness-test")
    cases = [Case("bare", call=lambda i: i), Case("resilience double", call=lambda i: i)]
    results = run_cases(cases, rounds=3, batch=50, max_seconds=30.0, title="two cases")
    lines = capsys.readouterr().err.replace("\r", "\n").split("\n")
    progress = [line.strip() for line in lines if line.strip()]
    assert re.fullmatch(r"round 1/3 +[\d.]+ s +~ *\d+ s left", progress[0])
    assert re.fullmatch(r"3 rounds in [\d.]+ s", progress[-1])
    (chart,) = _plots.charts("harness-test")
    assert chart.title == "two cases"
    assert chart.labels == ["bare", "resilience double"]
    assert chart.series["median"] == [result.median for result in results]
    assert chart.spread == [(result.low, result.high) for result in results]


def test_long_runs_print_a_line_per_step_with_the_time_left(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The fleet prints one line per configuration it finished (``Steps``), counting up to the
    whole run's total, so a 40-minute run is never silent between its tables."""
    steps = Steps(3, "run")
    run_all(["outage"], seed=1, quick=True, configs=["bare", "ours"], steps=steps)
    lines = [line.strip() for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 2
    assert re.fullmatch(r"run 1/3 \(outage: bare\) +[\d.]+ s +~ *\d+ s left", lines[0])
    assert lines[1].startswith("run 2/3 (outage: ours)")


@pytest.mark.examples  # runs a benchmark scenario and matplotlib: seconds, outside `make check`
def test_make_bench_writes_a_stamped_svg_per_scenario(tmp_path: Path) -> None:
    """``--plots DIR`` writes ``faults.svg`` from the run's own numbers, with the run's date
    and machine on it, and the option is not passed on to the scenario."""
    pytest.importorskip("matplotlib")  # the bench extra
    assert main(["faults", "--calls", "10", "--plots", str(tmp_path)]) == 0
    svg = (tmp_path / "faults.svg").read_text(encoding="utf-8")
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", svg)  # the run's date
    assert "CPUs" in svg and "Python" in svg  # the machine
    assert "resilience" in svg and "calls that succeeded" in svg  # text kept as text
    assert [path.name for path in tmp_path.iterdir()] == ["faults.svg"]


@pytest.mark.examples
def test_the_fleet_plots_carry_the_stamp_and_can_be_drawn_again_from_their_results(
    tmp_path: Path,
) -> None:
    """``fleet --scenario outage --plots DIR`` (the option's value reaches the fleet) writes the
    scenario's SVG, stamped with the run's date and machine like every other plot, and the
    results beside it; ``--replot DIR`` draws the same bytes again from those results alone."""
    pytest.importorskip("matplotlib")
    assert main(["fleet", "--quick", "--scenario", "outage", "--plots", str(tmp_path)]) == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "fleet-outage.json",
        "fleet-outage.svg",
    ]
    drawn = (tmp_path / "fleet-outage.svg").read_bytes()
    svg = drawn.decode("utf-8")
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", svg)  # the run's date
    assert "CPUs" in svg and "Python" in svg  # the machine
    saved = json.loads((tmp_path / "fleet-outage.json").read_text(encoding="utf-8"))
    assert [row["config"] for row in saved["results"]] == list(SCENARIOS["outage"].configs)
    assert saved["stamp"] in svg
    (tmp_path / "fleet-outage.svg").unlink()
    assert main(["fleet", "--replot", str(tmp_path)]) == 0
    assert (tmp_path / "fleet-outage.svg").read_bytes() == drawn


def test_an_unknown_scenario_name_is_refused_before_anything_runs() -> None:
    """A word before the first option that names no scenario stops the run, naming it."""
    with pytest.raises(SystemExit, match="unknown scenario \\['outage'\\]"):
        main(["outage", "--quick"])


def test_the_overload_benchmark_records_goodput_and_tail_for_its_plot() -> None:
    """The real-process overload run records its two verdicts per configuration: goodput as a
    share of capacity and p99 over the unloaded p99 (0 where nothing was answered)."""
    _plots.begin("overload-test")
    unloaded = Run("unloaded", answered=[0.1] * 99 + [0.2], seconds=10.0)
    runs = [
        Run("bare", answered=[], seconds=10.0),
        Run("adaptive", answered=[0.1] * 99 + [0.3] * 2, seconds=1.0),
    ]
    _record(runs, unloaded)
    goodput, tail = _plots.charts("overload-test")
    assert goodput.labels == ["bare httpx", "ours: AdaptiveConcurrency (Vegas)"]
    assert goodput.series["goodput"] == [0.0, pytest.approx(100 * 101 / CAPACITY)]
    assert tail.series["p99 / unloaded"][0] == 0.0
    base = percentile(unloaded.answered, 99)
    assert tail.series["p99 / unloaded"][1] == pytest.approx(0.3 / base)


@pytest.mark.server
def test_spawn_serves_on_loopback_and_stops_the_server_after() -> None:
    """``spawn`` starts a benchmark server in its own process and yields its loopback URL; the
    server answers, and is gone once the block ends; a server that cannot start raises."""
    import httpx

    with spawn("benchmarks._server") as url:
        assert url.startswith("http://127.0.0.1:")
        assert httpx.get(url).text == "ok"
    with pytest.raises(httpx.ConnectError):
        httpx.get(url)
    missing = spawn("benchmarks._no_such_server", timeout=5.0)
    with pytest.raises(RuntimeError, match="did not start"), missing:
        pass  # pragma: no cover
