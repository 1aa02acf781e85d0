"""Plots of a benchmark run: one SVG per scenario (matplotlib), a panel per table.

Scenarios record what they measured while they run (``record``; ``run_cases`` records every
table it times), and ``python -m benchmarks --plots DIR`` writes ``DIR/<scenario>.svg`` at the
end, each stamped with the run's date and machine. Numbers come from the run itself, never
from a file, so a plot cannot disagree with the table printed beside it. The fleet simulator
draws its own figures (``benchmarks._fleet_plot``) through the same ``pyplot``, ``stamp`` and
``save``: every plot carries the run's date and machine at its foot.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Chart", "begin", "charts", "pyplot", "record", "save", "stamp", "write"]


@dataclass
class Chart:
    """One panel: a bar per label for each series (``spread``: a min-max whisker per label of
    a single series), in ``unit``."""

    title: str
    unit: str
    labels: list[str]
    series: dict[str, list[float]]
    spread: list[tuple[float, float]] | None = None
    note: str = ""


@dataclass
class _Run:
    scenario: str = ""
    charts: dict[str, list[Chart]] = field(default_factory=dict)


_RUN = _Run()


def begin(scenario: str) -> None:
    """Charts recorded from now on belong to ``scenario``."""
    _RUN.scenario = scenario


def record(chart: Chart) -> None:
    """Keep ``chart`` for the current scenario's figure."""
    _RUN.charts.setdefault(_RUN.scenario or "benchmark", []).append(chart)


def charts(scenario: str) -> list[Chart]:
    """What ``scenario`` recorded so far."""
    return list(_RUN.charts.get(scenario, []))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "benchmark"


def stamp() -> str:
    """The run's date and machine on one line (the first two lines of the benchmarks' header):
    what every plot carries at its foot. Take it when the run starts."""
    from benchmarks._harness import header  # the harness imports this module

    return "   ".join(line.lstrip("# ") for line in header([]).splitlines()[:2])


def pyplot() -> Any:
    """matplotlib's pyplot (the ``bench`` extra), set up to write files only, and SVGs that
    keep their text as text (small, searchable) with stable ids (diffs show data only)."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "resilience-benchmarks"
    plt.rcParams["svg.fonttype"] = "none"
    return plt


def save(figure: Any, path: Path, stamp: str, *, png_too: bool = False) -> Path:
    """Write ``stamp`` at the foot of ``figure``, save it to ``path`` as SVG (with no date in
    its metadata: the stamp is the run's, not the file's) and close it; return ``path``."""
    figure.text(0.01, 0.005, stamp, fontsize=7, color="#555555", va="bottom")
    figure.tight_layout(rect=(0, 0.03, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="svg", metadata={"Date": None})
    if png_too:
        figure.savefig(path.with_suffix(".png"), format="png", dpi=80)
    pyplot().close(figure)
    return path


def write(
    directory: Path, stamp: str, scenarios: Sequence[str] | None = None, *, png_too: bool = False
) -> list[Path]:
    """Write one SVG per scenario that recorded charts; return the paths written."""
    plt = pyplot()
    written = []
    for scenario, panels in _RUN.charts.items():
        if scenarios is not None and scenario not in scenarios:
            continue
        heights = [0.6 + 0.32 * len(chart.labels) * max(1, len(chart.series)) for chart in panels]
        figure, axes = plt.subplots(
            len(panels), 1, figsize=(12, sum(heights) + 1.2), height_ratios=heights, squeeze=False
        )
        for axis, chart in zip(axes[:, 0], panels, strict=True):
            _draw(axis, chart)
        figure.suptitle(f"python -m benchmarks {scenario}", fontsize=12, x=0.01, ha="left")
        path = directory / f"{_slug(scenario)}.svg"
        written.append(save(figure, path, stamp, png_too=png_too))
    return written


_OURS, _PEER = "#d95f02", "#4c72b0"


def _is_ours(label: str) -> bool:
    """Whether a case is this project's (named "resilience ..." or after our classes)."""
    return label.startswith(("resilience", "Resilient", "AsyncResilient", "ours"))


def _draw(axis: object, chart: Chart) -> None:
    """Horizontal bars (first label on top), one colour per series, values printed."""
    ax = axis  # matplotlib Axes; typed loosely so this module imports without matplotlib
    count = len(chart.series)
    height = 0.8 / count
    positions = list(range(len(chart.labels)))
    for number, (name, values) in enumerate(chart.series.items()):
        offsets = [p + (number - (count - 1) / 2) * height for p in positions]
        errors = None
        colour: object = None  # each series its own colour
        if count == 1:  # one series: ours stand out from the peers
            colour = [_OURS if _is_ours(label) else _PEER for label in chart.labels]
            if chart.spread is not None:
                errors = [
                    [max(0.0, v - low) for v, (low, _) in zip(values, chart.spread, strict=True)],
                    [max(0.0, high - v) for v, (_, high) in zip(values, chart.spread, strict=True)],
                ]
        bars = ax.barh(  # type: ignore[attr-defined]
            offsets, values, height=height, xerr=errors, label=name, color=colour, capsize=2
        )
        ax.bar_label(bars, fmt="%.3g", fontsize=7, padding=3)  # type: ignore[attr-defined]
    ax.set_yticks(positions, chart.labels, fontsize=8)  # type: ignore[attr-defined]
    ax.invert_yaxis()  # type: ignore[attr-defined]
    ax.set_xlabel(chart.unit, fontsize=8)  # type: ignore[attr-defined]
    title = chart.title + (f"\n{chart.note}" if chart.note else "")
    ax.set_title(title, fontsize=10, loc="left")  # type: ignore[attr-defined]
    if count > 1:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # type: ignore[attr-defined]
    ax.grid(axis="x", alpha=0.3)  # type: ignore[attr-defined]
