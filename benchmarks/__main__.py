"""``python -m benchmarks [SCENARIO ...] [--quick] [--plots DIR]``: run some scenarios, or all.

Flags after the scenario names are handed to each scenario (``--quick`` works for all of them;
``python -m benchmarks overhead --rounds 9`` passes a scenario's own options), except
``--plots DIR``: at the end, one SVG per scenario that recorded tables is written there
(``make bench`` writes docs/plots/), stamped with the run's date and machine. Long runs print a
progress line per round on stderr. A scenario that fails is reported and the others still run;
the exit status is then 1.
"""

from __future__ import annotations

import importlib
import sys
import time
import traceback
from pathlib import Path

from benchmarks import _plots
from benchmarks._harness import header

SCENARIOS = [
    "overhead",
    "http",
    "instructions",
    "ratelimit",
    "stores",
    "telemetry",
    "faults",
    "middleware",
    "fleet",
    "overload",
]
# Scenarios that draw their own plots: they take --plots DIR themselves.
OWN_PLOTS = frozenset({"fleet"})


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if any(arg in ("-h", "--help") for arg in args) and not any(arg in SCENARIOS for arg in args):
        print(__doc__)
        print(f"scenarios: {', '.join(SCENARIOS)}")
        return 0
    plots = None
    if "--plots" in args:
        at = args.index("--plots")
        if at + 1 >= len(args):
            raise SystemExit("--plots needs a directory")
        plots = Path(args[at + 1])
        args = args[:at] + args[at + 2 :]
    stamp = "   ".join(line.lstrip("# ") for line in header([]).splitlines()[:2])
    chosen = [arg for arg in args if arg in SCENARIOS]
    flags = [arg for arg in args if arg not in SCENARIOS]
    unknown = [arg for arg in flags if not arg.startswith("-") and not arg.isdigit()]
    if unknown:
        raise SystemExit(f"unknown scenario {unknown}; choose from {SCENARIOS}")
    failed = []
    for name in chosen or SCENARIOS:
        print(f"\n=== {name} ===", flush=True)
        _plots.begin(name)
        started = time.monotonic()
        try:
            own = ["--plots", str(plots)] if plots is not None and name in OWN_PLOTS else []
            importlib.import_module(f"benchmarks.{name}").main(flags + own)
        except SystemExit as exit_:  # argparse: --help exits 0, a bad option 2
            if exit_.code not in (0, None):
                failed.append(name)
        except Exception:
            traceback.print_exc()
            failed.append(name)
        print(f"# {name}: {time.monotonic() - started:.1f} s", flush=True)
    if plots is not None:
        for path in _plots.write(plots, stamp, chosen or SCENARIOS):
            print(f"# plot: {path}", flush=True)
    if failed:
        print(f"\nfailed scenarios: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
