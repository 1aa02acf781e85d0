"""httpx integration: HTTP retry semantics, Retry-After and idempotency keys (transports soon)."""
