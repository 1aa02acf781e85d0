"""The benchmark harness's progress lines and the plots ``python -m benchmarks --plots`` draws."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmarks import _plots
from benchmarks.__main__ import main
from benchmarks._harness import Case, run_cases


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
