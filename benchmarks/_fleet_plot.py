"""SVG plots of a fleet scenario (matplotlib, from the ``bench`` extra): goodput and the
requests reaching the leaf over time, and each configuration's p50/p99.

The SVGs are reproducible: no date in the metadata and a fixed id salt, so the same seed
writes the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks._fleet_report import Result

if TYPE_CHECKING:
    from benchmarks.fleet import Scenario

__all__ = ["plot"]


def plot(results: Sequence[Result], scenario: Scenario, directory: str) -> Path:
    """Write ``fleet-<scenario>.svg`` into ``directory``; return its path."""
    import matplotlib

    matplotlib.use("svg")
    matplotlib.rcParams["svg.hashsalt"] = "resilience-fleet"
    import matplotlib.pyplot as plt

    figure, (goodput, leaf, latency) = plt.subplots(
        3, 1, figsize=(9, 10), gridspec_kw={"height_ratios": [3, 3, 2]}
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
    goodput.set_title(f"{scenario.name}: goodput", loc="left")
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
    figure.tight_layout()
    path = Path(directory) / f"fleet-{scenario.name}.svg"
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="svg", metadata={"Date": None})
    plt.close(figure)
    return path
