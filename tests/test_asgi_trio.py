"""The ASGI middleware behind a trio server (hypercorn's trio worker, on 127.0.0.1): what runs
them there is trio, so asyncio's primitives are not at hand; the idempotency middleware's lease
heartbeat and the other middleware's waits must use trio's."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from resilience import AdaptiveConcurrency, AimdLimit, RateLimiter
from resilience import asgi as resilience_asgi
from resilience.stores import MemoryStore
from resilience.testing import FakeClock
from tests.conftest import wait_until
from tests.server_apps import Ledger, asgi_app
from tests.test_idempotency_servers import charge, held_charge, stats
from tests.trio_server import serve_trio

pytestmark = pytest.mark.server

LEASE = 0.3  # seconds: the heartbeat renews every 0.1 s of real time


class _RenewalWatch(MemoryStore):
    """A ``MemoryStore`` on a fake clock that tells the test when a claim was renewed, and at
    which (fake) time."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.clock = clock
        self.renewed = threading.Condition()
        self.renewed_at = -1.0

    async def idempotency_renew_async(
        self, record: str, fingerprint: str, token: str, lease: float
    ) -> Any:
        at = self.clock.now()  # the renewal below reads the clock later: at least this
        outcome = await super().idempotency_renew_async(record, fingerprint, token, lease)
        with self.renewed:
            self.renewed_at = max(self.renewed_at, at)
            self.renewed.notify_all()
        return outcome

    def wait_renewed_since(self, moment: float) -> bool:
        """Wait (bounded) until a renewal read the clock at ``moment`` or later."""
        with self.renewed:
            return self.renewed.wait_for(lambda: self.renewed_at >= moment, 10.0)


def _idempotent(ledger: Ledger, **options: Any) -> Any:
    return resilience_asgi.IdempotencyMiddleware(
        resilience_asgi.DeadlineMiddleware(asgi_app(ledger)), **options
    )


def test_a_keyed_post_runs_once_and_its_retry_is_replayed() -> None:
    """Under trio a keyed POST runs once; its retry gets the stored response, marked replayed."""
    with serve_trio(_idempotent(Ledger(), store=MemoryStore())) as url:
        first, again = charge(url), charge(url)
        runs = stats(url)["runs"]
    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true" and again.content == first.content
    assert runs == 1


def test_a_handler_that_outlives_its_lease_is_not_run_twice() -> None:
    """The heartbeat renews the claim under trio: with the store's time moved on by 0.9 of a
    lease after each renewal (2.7 leases in all), every retry meanwhile gets 409, never a
    second run; once the handler ends its response is stored and replayed."""
    store = _RenewalWatch(FakeClock())
    with serve_trio(_idempotent(Ledger(), store=store, lease=LEASE)) as url:
        first, results = held_charge(url, "hold-first")
        answers = []
        for _ in range(3):
            store.clock.advance(0.9 * LEASE)  # without a renewal since, the claim expires
            assert store.wait_renewed_since(store.clock.now()), "no renewal under trio"
            answers.append(charge(url).status_code)
        httpx.get(f"{url}/release")
        first.join(20)
        replay = charge(url)
        runs = stats(url)["runs"]
    assert answers == [409, 409, 409]
    assert results[0].status_code == 201
    assert replay.headers["idempotent-replayed"] == "true" and runs == 1


def test_the_other_middleware_answer_under_trio() -> None:
    """Concurrency limit (503 past the limit), deadline (504 once the caller's time is out) and
    rate limit (429 past the quota) work under trio as under asyncio."""
    ledger = Ledger()
    app = resilience_asgi.ConcurrencyLimitMiddleware(
        resilience_asgi.RateLimitMiddleware(
            resilience_asgi.DeadlineMiddleware(asgi_app(ledger)),
            RateLimiter(3, per=3600.0),  # three at once, then one more per 20 minutes
            shared=True,
        ),
        AdaptiveConcurrency(AimdLimit(initial_limit=1)),
    )
    with serve_trio(app) as url:
        held = threading.Thread(target=lambda: charge(url, key=None, test="hold"))
        held.start()
        wait_until(lambda: ledger.held == 1, "the first request to run")
        crowded = charge(url, key=None)  # refused before the rate limiter counts it
        ledger.release.set()
        held.join(20)
        late = charge(url, key=None, test="deadline", headers={"Request-Timeout-Ms": "50"})
        third = charge(url, key=None)
        over = charge(url, key=None)
    assert crowded.status_code == 503 and crowded.headers["retry-after"]
    assert late.status_code == 504
    assert third.status_code == 201
    assert over.status_code == 429 and int(over.headers["retry-after"]) > 0
    assert ledger.runs == 3
