"""``python -m benchmarks [SCENARIO ...] [--quick] [--plots DIR]``: run some scenarios, or all.

Scenario names come first; the options after them are handed to each scenario (``--quick``
works for all of them; ``overhead --rounds 9`` passes a scenario's own options, ``fleet
--scenario overload`` the fleet's), except ``--plots DIR``: at the end, one SVG per scenario
that recorded tables is written there (``make bench`` writes docs/plots/), stamped with the
run's date and machine (the fleet draws its own, and saves their results as JSON beside them).
Long runs print a progress line per round on stderr. A scenario that fails is reported and the
others still run; the exit status is then 1.
"""

from __future__ import annotations

import importlib
import sys
import time
import traceback
from pathlib import Path

from benchmarks import _plots

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
    for at, arg in enumerate(args):
        if arg == "--plots" or arg.startswith("--plots="):
            inline = "=" in arg
            value = arg.partition("=")[2] if inline else "".join(args[at + 1 : at + 2])
            if not value or value.startswith("-"):
                raise SystemExit("--plots needs a directory")
            plots = Path(value)
            args = args[:at] + args[at + (1 if inline else 2) :]
            break
    stamp = _plots.stamp()
    # Scenario names come first; from the first option on, everything goes to the scenarios
    # (so ``fleet --scenario overload`` passes ``overload`` to the fleet, not as a scenario).
    first = next((at for at, arg in enumerate(args) if arg.startswith("-")), len(args))
    chosen, flags = args[:first], args[first:]
    unknown = [arg for arg in chosen if arg not in SCENARIOS]
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
