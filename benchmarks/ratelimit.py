"""Rate limiter cost: µs per acquisition in memory and on Redis, beside ``limits`` and
pyrate-limiter measured in the same run, and Redis round trips per decision.

Targets (issue 4): the memory limiter <= 1.5 µs per acquire; the Redis limiter exactly one
round trip per decision and at least ``limits``' throughput. Every limit here is set so high
that every call is admitted: we time the bookkeeping, not the refusals. The Redis cases start
their own redis-server on a free 127.0.0.1 port (never the machine's 6379).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from benchmarks._harness import Case, header, paired, run_cases, sizes, table
from resilience import RateLimiter
from resilience.stores import RedisStore

PEERS = ["resilience", "limits", "pyrate-limiter", "redis"]
HIGH = 1_000_000_000  # per second: never limiting


@contextmanager
def redis_server() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (make test installs it)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as scratch:
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", scratch],
            stdout=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.kill()
            process.wait(10)


def memory_cases() -> list[Case]:
    import limits
    from limits.storage import MemoryStorage
    from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter
    from pyrate_limiter import Duration, Limiter, Rate

    ours = RateLimiter(HIGH, burst=1000)
    guarded = ours(lambda i: i)
    item = limits.parse(f"{HIGH}/second")
    fixed = FixedWindowRateLimiter(MemoryStorage())
    moving_item = limits.parse("100000/second")
    moving = MovingWindowRateLimiter(MemoryStorage())
    pyrate = Limiter(Rate(HIGH, Duration.SECOND))
    group = "memory, one acquisition"
    return [
        Case("bare call", lambda i: i, group=group),
        Case("resilience RateLimiter (decorator)", guarded, group=group),
        Case(
            "resilience RateLimiter.try_acquire()",
            lambda i: ours.try_acquire().allowed and i,
            group=group,
        ),
        Case("limits fixed window hit()", lambda i: fixed.hit(item, "k") and i, group=group),
        Case(
            "limits moving window hit()",
            lambda i: (moving.hit(moving_item, "k"), i)[1],
            group=group,
        ),
        Case(
            "pyrate-limiter try_acquire()",
            lambda i: pyrate.try_acquire("k", blocking=False) and i,
            group=group,
        ),
    ]


def _with_peer(app: Any, peer: str) -> Any:
    """``app`` behind a server that saw the connection come from ``peer``."""

    async def served(scope: Any, receive: Any, send: Any) -> None:
        scope["client"] = (peer, 50_000)
        await app(scope, receive, send)

    return served


def middleware_cases() -> tuple[list[Case], list[Case]]:
    """RateLimitMiddleware per request, in process (no socket), never limiting: how callers
    are told apart (#12 item 9) beside one shared bucket and the bare app."""
    from benchmarks.middleware import _asgi_case, _bare_asgi, _bare_wsgi, _wsgi_case
    from resilience import asgi, wsgi

    def limiter() -> RateLimiter:
        return RateLimiter(HIGH, burst=1000)

    proxy = {"trusted_proxies": ["10.0.0.0/8"], "client_header": "X-Forwarded-For"}

    def key(scope: Any) -> str | None:
        return "tenant-7"

    asgi_apps = {
        "ASGI bare app": _with_peer(_bare_asgi, "192.0.2.7"),
        "ASGI shared=True (one bucket)": _with_peer(
            asgi.RateLimitMiddleware(_bare_asgi, limiter(), shared=True), "192.0.2.7"
        ),
        "ASGI by peer address, IPv4 (default)": _with_peer(
            asgi.RateLimitMiddleware(_bare_asgi, limiter()), "192.0.2.7"
        ),
        "ASGI by peer address, IPv6 /64": _with_peer(
            asgi.RateLimitMiddleware(_bare_asgi, limiter()), "2001:db8::7"
        ),
        "ASGI by X-Forwarded-For from a trusted proxy": _with_peer(
            asgi.RateLimitMiddleware(_bare_asgi, limiter(), **proxy), "10.1.2.3"
        ),
        "ASGI partition=fn": _with_peer(
            asgi.RateLimitMiddleware(_bare_asgi, limiter(), partition=key), "192.0.2.7"
        ),
    }
    forwarded = [(b"x-forwarded-for", b"198.51.100.9, 10.4.4.4")]
    asgi_list = [
        _asgi_case(name, app, "POST", lambda i: forwarded) for name, app in asgi_apps.items()
    ]
    wsgi_apps = {
        "WSGI bare app": (_bare_wsgi, "192.0.2.7"),
        "WSGI shared=True (one bucket)": (
            wsgi.RateLimitMiddleware(_bare_wsgi, limiter(), shared=True),
            "192.0.2.7",
        ),
        "WSGI by peer address, IPv4 (default)": (
            wsgi.RateLimitMiddleware(_bare_wsgi, limiter()),
            "192.0.2.7",
        ),
        "WSGI by X-Forwarded-For from a trusted proxy": (
            wsgi.RateLimitMiddleware(_bare_wsgi, limiter(), **proxy),
            "10.1.2.3",
        ),
    }
    wsgi_list = [
        _wsgi_case(
            name,
            app,
            "POST",
            lambda i, peer=peer: {
                "REMOTE_ADDR": peer,
                "HTTP_X_FORWARDED_FOR": "198.51.100.9, 10.4.4.4",
            },
        )
        for name, (app, peer) in wsgi_apps.items()
    ]
    return asgi_list, wsgi_list


def redis_cases(url: str) -> tuple[list[Case], Any]:
    import limits
    import redis
    from limits.storage import RedisStorage
    from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter
    from pyrate_limiter import Duration, Limiter, Rate, RedisBucket

    client = redis.Redis.from_url(url)
    ours = RateLimiter(HIGH, burst=1000, name="bench", store=RedisStore(client))
    guarded = ours(lambda i: i)
    storage = RedisStorage(url)
    item = limits.parse(f"{HIGH}/second")
    fixed = FixedWindowRateLimiter(storage)
    moving_item = limits.parse("100000000/second")
    moving = MovingWindowRateLimiter(storage)
    pyrate = Limiter(RedisBucket.init([Rate(HIGH, Duration.SECOND)], client, "pyrate"))
    group = "Redis (loopback), one acquisition"
    return [
        Case("redis PING (one round trip)", lambda i: client.ping() and i, group=group),
        Case("resilience RateLimiter on RedisStore", guarded, group=group),
        Case(
            "limits fixed window hit() on Redis", lambda i: fixed.hit(item, "k") and i, group=group
        ),
        Case(
            "limits moving window hit() on Redis",
            lambda i: (moving.hit(moving_item, "k"), i)[1],
            group=group,
        ),
        Case(
            "pyrate-limiter RedisBucket try_acquire()",
            lambda i: pyrate.try_acquire("k", blocking=False) and i,
            group=group,
        ),
    ], client


def round_trips(client: Any, url: str) -> float:
    """Client commands (round trips) per decision of our limiter, from INFO commandstats.

    Commands a script runs inside (TIME, GET, SET) are counted by Redis too; they are
    subtracted once per script call, so a separate GET or SET sent by our code would show.
    """
    limiter = RateLimiter(HIGH, burst=1000, name="count", store=RedisStore(client))
    limiter.try_acquire()  # loads the script
    client.config_resetstat()
    for _ in range(100):
        limiter.try_acquire()
    stats = client.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    scripts = calls.pop("evalsha", 0) + calls.pop("eval", 0)
    inside = {"time": scripts, "get": scripts, "set": scripts}
    ours = {name: n for name, n in calls.items() if not name.startswith(("config", "info"))}
    extra = sum(max(0, n - inside.get(name, 0)) for name, n in ours.items())
    return (scripts + extra) / 100


QUICK, FULL = (3, 2_000, 10.0), (7, 20_000, 90.0)  # rounds, calls per sample, seconds


def main(argv: list[str] | None = None) -> None:
    quick = sizes(argv, __doc__, quick=QUICK, full=FULL) == QUICK
    rounds, batch, budget = QUICK if quick else FULL
    print(header(PEERS))
    print(f"# {rounds} interleaved rounds; median µs per acquisition\n")
    memory = run_cases(memory_cases(), rounds=rounds, batch=batch, max_seconds=budget)
    print(table(memory, baseline="bare call", ours="resilience RateLimiter (decorator)"))
    ours = next(r for r in memory if r.name == "resilience RateLimiter (decorator)")
    base = next(r for r in memory if r.name == "bare call")
    cost = ours.median - base.median
    print(
        f"\nmemory limiter: {cost:.2f} µs per acquire (target <= 1.5): "
        f"{'MET' if cost <= 1.5 else 'MISSED'}\n"
    )
    for cases in middleware_cases():
        served = run_cases(cases, rounds=rounds, batch=max(200, batch // 4), max_seconds=budget)
        print(table(served, baseline=cases[0].name, ours=cases[2].name))
        print()
    with redis_server() as url:
        cases, client = redis_cases(url)
        remote_batch = max(200, batch // 10)
        remote = run_cases(
            cases,
            rounds=rounds if quick else 15,  # round trips are cheap: more rounds, steadier
            batch=remote_batch,
            max_seconds=budget,
            slices=remote_batch // 100,  # cases take turns every 100 decisions
        )
        print(
            table(
                remote,
                baseline="redis PING (one round trip)",
                ours="resilience RateLimiter on RedisStore",
            )
        )
        trips = round_trips(client, url)
    ours_remote = "resilience RateLimiter on RedisStore"
    limits_peers = ("limits fixed window hit() on Redis", "limits moving window hit() on Redis")
    ratios = {
        name: paired(remote, name, ours_remote)
        for name in (*limits_peers, "pyrate-limiter RedisBucket try_acquire()")
    }
    for name, ratio in ratios.items():
        print(f"our throughput / {name}: {ratio:.3f} (median of per-round ratios)")
    print(
        f"\nRedis round trips per decision: {trips:.2f} (target 1); at least limits' "
        f"throughput: {'MET' if min(ratios[name] for name in limits_peers) >= 1.0 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
