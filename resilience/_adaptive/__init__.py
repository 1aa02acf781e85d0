"""Overload control that adapts, as sans-IO algorithms (layer 2: no clock, no I/O, no locks).

- ``limits``: concurrency limits that move with measured latency and drops (AIMD, Gradient2).
- ``admission``: in-flight calls against such a limit, and the FIFO of calls waiting for one.
- ``throttle``: the SRE client-side throttle (requests vs accepts over a sliding window).
- ``percentile``: a latency percentile over a sliding window, for hedging at "p95".

The policies over them (``AdaptiveConcurrency``, ``AdaptiveThrottle``) live in
``resilience._concurrency`` and ``resilience._throttle``; the fleet simulator in
``benchmarks/fleet.py`` drives these same objects on a fake clock.
"""
