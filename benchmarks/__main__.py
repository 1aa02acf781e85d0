"""``python -m benchmarks [SCENARIO] [--quick]``: run one scenario, or all of them."""

from __future__ import annotations

import importlib
import sys

SCENARIOS = ["overhead", "http", "ratelimit"]


def main() -> None:
    args = sys.argv[1:]
    chosen = [arg for arg in args if not arg.startswith("-")]
    flags = [arg for arg in args if arg.startswith("-")]
    unknown = [name for name in chosen if name not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario {unknown}; choose from {SCENARIOS}")
    for name in chosen or SCENARIOS:
        print(f"\n=== {name} ===")
        importlib.import_module(f"benchmarks.{name}").main(flags)


if __name__ == "__main__":
    main()
