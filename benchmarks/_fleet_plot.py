"""SVG plots of a fleet scenario (matplotlib, from the ``bench`` extra): goodput and the
requests reaching the leaf over time, and each configuration's p50/p99; and the results they
are drawn from, saved beside them as JSON so that a plot can be drawn again without
simulating again (``python -m benchmarks fleet --replot DIR``).

Like every benchmark plot (``benchmarks._plots``), each carries the run's date and machine at
its foot; apart from that line, the same seed writes the same bytes (no date in the metadata,
a fixed id salt).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path

from benchmarks import _plots
from benchmarks._fleet_report import Result

__all__ = ["plot", "replot", "save_results"]


def save_results(results: Sequence[Result], name: str, directory: str, stamp: str) -> Path:
    """Write ``fleet-<name>.json``: the run's stamp and every result, time series included."""
    path = Path(directory) / f"fleet-{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [dataclasses.asdict(result) for result in results]
    data = {"scenario": name, "stamp": stamp, "results": rows}
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")  # NaN: no latency
    return path


def replot(directory: str) -> list[Path]:
    """Draw ``fleet-<name>.svg`` again from each ``fleet-<name>.json`` in ``directory``, with
    the stamp of the run that produced it; return the plots written."""
    written = []
    for source in sorted(Path(directory).glob("fleet-*.json")):
        data = json.loads(source.read_text(encoding="utf-8"))
        results = [Result(**{**row, "incident": tuple(row["incident"])}) for row in data["results"]]
        written.append(plot(results, data["scenario"], directory, data["stamp"]))
    return written


def plot(results: Sequence[Result], name: str, directory: str, stamp: str) -> Path:
    """Write ``fleet-<name>.svg`` into ``directory``, stamped ``stamp``; return its path."""
    plt = _plots.pyplot()
    figure, (goodput, leaf, latency) = plt.subplots(
        3, 1, figsize=(9, 10.4), gridspec_kw={"height_ratios": [3, 3, 2]}
    )
    start, end = results[0].incident
    for result in results:
        seconds = range(len(result.series_goodput))
        goodput.plot(seconds, result.series_goodput, label=result.config, linewidth=1.2)
        leaf.plot(seconds, [max(n, 0.5) for n in result.series_leaf], label=result.config)
    capacity = results[0].capacity
    goodput.axhline(capacity, color="grey", linestyle=":", linewidth=1, label="leaf capacity")
    for axis in (goodput, leaf):
        axis.axvspan(start, end, color="red", alpha=0.08, label="incident")
        axis.set_xlabel("time (s)")
    goodput.set_ylabel("successful user requests / s")
    goodput.set_title(f"{name}: goodput", loc="left")
    goodput.legend(fontsize=8, ncol=3)
    leaf.set_yscale("log")
    leaf.set_ylabel("requests reaching the leaf / s")
    leaf.set_title("amplification at the leaf", loc="left")
    names = [r.config for r in results]
    positions = range(len(results))
    p50 = [0.0 if math.isnan(r.p50) else r.p50 * 1000 for r in results]
    p99 = [0.0 if math.isnan(r.p99) else r.p99 * 1000 for r in results]
    latency.bar([p - 0.2 for p in positions], p50, width=0.4, label="p50")
    latency.bar([p + 0.2 for p in positions], p99, width=0.4, label="p99")
    latency.set_xticks(list(positions), names, fontsize=8)
    latency.set_ylabel("ms (successful requests)")
    latency.set_title("latency during the incident", loc="left")
    latency.legend(fontsize=8)
    figure.suptitle(f"python -m benchmarks fleet: {name}", fontsize=12, x=0.01, ha="left")
    return _plots.save(figure, Path(directory) / f"fleet-{name}.svg", stamp)
