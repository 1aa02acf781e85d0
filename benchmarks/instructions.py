"""Client CPU instructions per request, counted by valgrind (callgrind): bare httpx vs ours.

Wall-clock ratios of a few per cent drown in this machine's noise (a second bare client
differs from the first by 1-2 % in the ``http`` scenario). Instruction counts do not: callgrind
counts what the client process executes, the same whatever else the machine runs. Each variant
runs twice in a child process under callgrind, for ``short`` and ``long`` requests on the same
loopback server; (long - short) / (long - short requests) is the cost of one request, start-up
and imports cancelling out.

The ratio bare / variant is a *bound* on the throughput ratio, not the throughput ratio: a
request's wall time also holds the kernel and the server, which these counts leave out, so the
real ratio is closer to 1. Needs ``valgrind`` on PATH (skipped, saying so, without it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable

import httpx

from benchmarks._floor import FloorTransport
from benchmarks._harness import header
from benchmarks.http import FLOOR, HEADER_ONLY, HEADLESS, loopback_server, ours_options
from resilience.http import DEADLINE_HEADER, AsyncResilientTransport, ResilientTransport

PEERS = ["resilience", "httpx", "httpcore", "h11", "httpx-retries"]


def _peer() -> httpx.Client:
    from httpx_retries import Retry as PeerRetry
    from httpx_retries import RetryTransport

    return httpx.Client(transport=RetryTransport(retry=PeerRetry(total=3)))


SYNC: dict[str, Callable[[], httpx.Client]] = {
    "bare httpx.Client": httpx.Client,
    "ResilientTransport": lambda: httpx.Client(transport=ResilientTransport(**ours_options())),
    FLOOR: lambda: httpx.Client(transport=FloorTransport()),
    HEADER_ONLY: lambda: httpx.Client(headers={DEADLINE_HEADER: "5000"}),
    HEADLESS: lambda: httpx.Client(
        transport=ResilientTransport(**ours_options(), deadline_header=None)
    ),
    "httpx-retries RetryTransport": _peer,
}
ASYNC: dict[str, Callable[[], httpx.AsyncClient]] = {
    "bare httpx.AsyncClient": httpx.AsyncClient,
    "AsyncResilientTransport": lambda: httpx.AsyncClient(
        transport=AsyncResilientTransport(**ours_options())
    ),
}
_WARM_UP = 30


def child(url: str, variant: str, requests: int) -> None:
    """Send ``requests`` GETs (after a warm-up) with the variant's client; check each answer."""
    warnings.simplefilter("ignore")
    if variant in SYNC:
        client = SYNC[variant]()
        for i in range(_WARM_UP + requests):
            if client.get(url).status_code != 200:
                raise AssertionError(f"{variant}: request {i} failed")
        return

    async def run() -> None:
        async with ASYNC[variant]() as aclient:
            for i in range(_WARM_UP + requests):
                if (await aclient.get(url)).status_code != 200:
                    raise AssertionError(f"{variant}: request {i} failed")

    asyncio.run(run())


def count(valgrind: str, url: str, variant: str, requests: int) -> int:
    """Instructions the child executes, start to end, as callgrind reports them."""
    command = [
        valgrind,
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "benchmarks.instructions",
        "--child",
        url,
        variant,
        str(requests),
    ]
    # A fixed hash seed: set and dict layouts (and so the instructions) repeat run to run.
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=600, check=False, env=env
    )
    found = re.search(r"Collected\s*:\s*(\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind run of {variant!r} failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer requests and variants")
    parser.add_argument("--child", nargs=3, metavar=("URL", "VARIANT", "REQUESTS"))
    args = parser.parse_args(argv)
    if args.child:
        url, variant, requests = args.child
        child(url, variant, int(requests))
        return
    valgrind = shutil.which("valgrind")
    print(header(PEERS))
    if valgrind is None:
        print("valgrind is not installed: instruction counts skipped")
        return
    short, long = (20, 120) if args.quick else (100, 600)
    print(
        f"# client instructions per request = (count at {long} - count at {short} requests) "
        f"/ {long - short}, under callgrind\n"
    )
    groups: list[tuple[str, list[str]]] = [
        ("sync", list(SYNC) if not args.quick else list(SYNC)[:3]),
        ("async", list(ASYNC)),
    ]
    per_request: dict[str, float] = {}
    with loopback_server() as url:
        for group, variants in groups:
            print(f"{'-- ' + group:<48} {'instr/request':>14} {'extra':>9} {'bare/this':>10}")
            base: float | None = None
            for variant in variants:
                total = count(valgrind, url, variant, long) - count(valgrind, url, variant, short)
                per_request[variant] = value = total / (long - short)
                base = value if base is None else base
                print(f"{variant:<48} {value:14,.0f} {value - base:9,.0f} {base / value:10.3f}")
            print()
    sync = per_request["bare httpx.Client"] / per_request["ResilientTransport"]
    asynchronous = per_request["bare httpx.AsyncClient"] / per_request["AsyncResilientTransport"]
    print(
        f"instruction ratio bare/ours (a bound on the throughput ratio): "
        f"sync {sync:.3f}, async {asynchronous:.3f}"
    )
    floor = per_request[FLOOR] / per_request["ResilientTransport"]
    print(
        f"the standard pipeline vs the floor (floor/ours; target >= 0.98, within 2 %): "
        f"{floor:.3f}: {'MET' if floor >= 0.98 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
