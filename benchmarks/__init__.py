"""Benchmarks for resilience, run beside the peers in one process: ``python -m benchmarks``."""
