"""Events the policies emit, and ``subscribe()``: the only seam to telemetry and logging.

Policies build an event only when somebody listens (one truth test on the hot path), hand it to
every listener, and never know who listens. Events are frozen dataclasses named in the past
tense. A listener that raises is logged and skipped; it never breaks the call it observes.

Spans need more than events (a start, an end, a context to propagate), so the seam also has
``Observer``: the small interface that the transports and ``Pipeline`` call around an attempt
or a call. ``resilience.instrumentation`` implements it on OpenTelemetry; ``observer()`` loads
it lazily, so nothing here (nor any policy) imports opentelemetry.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

__all__ = [
    "BulkheadRejected",
    "CallRejected",
    "CircuitStateChanged",
    "ConcurrencyLimited",
    "DeadlineExceeded",
    "Event",
    "FallbackUsed",
    "HedgeSent",
    "IdempotencyClaimLost",
    "IdempotencyConflict",
    "IdempotencyMismatch",
    "IdempotentReplayed",
    "Listener",
    "Observer",
    "RateLimited",
    "RetryBudgetExhausted",
    "RETRY_GAVE_UP",
    "RetryGaveUp",
    "RetryGaveUpWhy",
    "RetryScheduled",
    "StoreRecovered",
    "StoreUnavailable",
    "Throttled",
    "emit",
    "listeners",
    "log_decision",
    "observer",
    "subscribe",
]

_log: Final = logging.getLogger("resilience")
# A library's logger gets a NullHandler (logging HOWTO, "Configuring Logging for a Library"):
# records go where the application's configuration sends them, and an application that
# configured none does not get them printed by Python's last-resort handler.
if not any(isinstance(handler, logging.NullHandler) for handler in _log.handlers):
    _log.addHandler(logging.NullHandler())


@dataclass(frozen=True, slots=True)
class Event:
    """Base of all events; ``policy`` is the name of the policy instance that emitted it."""

    policy: str


@dataclass(frozen=True, slots=True)
class RetryScheduled(Event):
    """Attempt ``attempt`` failed with ``reason``; the next one starts after ``delay`` seconds."""

    attempt: int
    delay: float
    reason: str


# Why retrying stopped: stable values (metric labels, log fields), each with its English.
RetryGaveUpWhy = Literal["attempts", "budget", "deadline", "rejected"]
RETRY_GAVE_UP: Final[dict[str, str]] = {
    "attempts": "attempts exhausted",
    "budget": "retry budget spent",
    "deadline": "deadline would pass during the backoff",
    "rejected": "refused locally by a policy inside",
}


@dataclass(frozen=True, slots=True)
class RetryGaveUp(Event):
    """Retrying stopped after ``attempts`` attempts; ``why`` is "attempts" (all used),
    "budget" (the retry budget refused), "deadline" (the next delay would cross it) or
    "rejected" (a policy inside refused the call locally, and ``rejections="final"``)."""

    attempts: int
    why: RetryGaveUpWhy
    reason: str

    @property
    def explanation(self) -> str:
        """``why`` in English, for log lines and notes ("attempts exhausted")."""
        return RETRY_GAVE_UP[self.why]


@dataclass(frozen=True, slots=True)
class RetryBudgetExhausted(Event):
    """A retry was refused because the shared retry budget was spent."""

    attempt: int


@dataclass(frozen=True, slots=True)
class CircuitStateChanged(Event):
    """The breaker moved from ``old`` to ``new`` (values of ``CircuitState``)."""

    old: str
    new: str


@dataclass(frozen=True, slots=True)
class CallRejected(Event):
    """An open (or saturated half-open) breaker refused a call; retry after ``retry_after``."""

    retry_after: float


@dataclass(frozen=True, slots=True)
class BulkheadRejected(Event):
    """The bulkhead had no permit and could not queue the call (or its wait ran out)."""

    max_concurrent: int


@dataclass(frozen=True, slots=True)
class ConcurrencyLimited(Event):
    """The adaptive concurrency limit (``limit``, ``in_flight`` calls) refused a call."""

    limit: int
    in_flight: int


@dataclass(frozen=True, slots=True)
class Throttled(Event):
    """The client-side throttle refused a call locally; it refuses with ``probability``."""

    probability: float


@dataclass(frozen=True, slots=True)
class RateLimited(Event):
    """A rate limiter refused a call; it could be admitted after ``retry_after`` seconds."""

    retry_after: float


@dataclass(frozen=True, slots=True)
class StoreUnavailable(Event):
    """A shared store (Redis) failed with ``error``; the policy falls back to ``fallback``.

    Emitted once per outage, not per call."""

    error: str
    fallback: str


@dataclass(frozen=True, slots=True)
class StoreRecovered(Event):
    """The shared store answers again after an outage."""


@dataclass(frozen=True, slots=True)
class DeadlineExceeded(Event):
    """A Timeout or Deadline of ``timeout`` seconds ran out."""

    timeout: float


@dataclass(frozen=True, slots=True)
class HedgeSent(Event):
    """A hedge started attempt number ``attempt`` (2 for the first extra copy)."""

    attempt: int


@dataclass(frozen=True, slots=True)
class FallbackUsed(Event):
    """The fallback replaced a failure (``reason``) with its value or handler's result."""

    reason: str


@dataclass(frozen=True, slots=True)
class IdempotentReplayed(Event):
    """The server answered a retried request with the stored response of its first run."""


@dataclass(frozen=True, slots=True)
class IdempotencyConflict(Event):
    """The server refused (409) a request whose key is held by a request still running."""


@dataclass(frozen=True, slots=True)
class IdempotencyMismatch(Event):
    """The server refused (422) a key reused with a different payload."""


@dataclass(frozen=True, slots=True)
class IdempotencyClaimLost(Event):
    """A running request found its claim taken or finished by another (``step``: "renew" or
    "complete"): its response was not stored, and the handler may have run twice."""

    step: str


Listener = Callable[[Event], object]

# A tuple swapped on (un)subscribe, so emitters iterate a snapshot without locking.
listeners: tuple[Listener, ...] = ()


def subscribe(listener: Listener) -> Callable[[], None]:
    """Call ``listener(event)`` for every event from now on; return a function that stops it."""
    global listeners
    listeners = (*listeners, listener)

    def unsubscribe() -> None:
        global listeners
        listeners = tuple(other for other in listeners if other is not listener)

    return unsubscribe


def emit(event: Event) -> None:
    """Hand ``event`` to every listener; a failing listener is logged, never raised."""
    for listener in listeners:
        try:
            listener(event)
        except Exception:
            _log.exception("resilience event listener %r failed on %r", listener, event)


# Server middleware log what they refuse (a 429, a 409, a 503...) here at INFO, with no
# subscription: an operator turns it on with ordinary logging configuration. Events are for
# telemetry; this is the server's own account of its answers.
_decisions: Final = logging.getLogger("resilience.server")


def log_decision(
    decision: str, policy: str, status: int, method: str, path: str, detail: str
) -> None:
    """Log a server middleware's answer on ``resilience.server`` at INFO.

    ``decision`` is a stable word (``rate_limited``, ``store_unavailable``, ...); ``policy``
    the middleware's configured name; ``method`` and ``path`` the request's (never its query
    string, whose parameters may be credentials; the path is logged with ``repr``, so a
    request cannot forge log lines). Never pass a partition, a key or a header's value.
    Costs one level check when INFO is off.
    """
    if not _decisions.isEnabledFor(logging.INFO):
        return
    _decisions.info(
        "%s %r -> %d %s: %s (%r)",
        method,
        path,
        status,
        decision,
        detail,
        policy,
        extra={
            "resilience_decision": decision,
            "resilience_policy": policy,
            "http_request_method": method,
            "http_response_status_code": status,
            "url_path": path,
        },
    )


class Observer(Protocol):
    """Spans around work: what ``resilience.instrumentation`` implements for the shells.

    ``start_attempt`` is called just before one HTTP attempt goes to the wire (it may add
    headers, e.g. ``traceparent``) and returns a token handed back to ``end_attempt`` with the
    response or the exception (``None``: nothing to end); ``call`` returns a context manager
    wrapping one ``Pipeline`` call in a span named ``name`` made current, ``function`` its
    ``code.function.name`` (``None``: nothing to record).
    """

    def start_attempt(self, request: Any) -> object | None: ...

    def end_attempt(
        self, token: object, response: Any | None, error: BaseException | None
    ) -> None: ...

    def call(self, name: str, function: str) -> AbstractContextManager[object] | None: ...


_INSTRUMENTATION: Final = "resilience.instrumentation._otel"
_default: list[Observer | None] = []  # [] until resolved, then [the default or None]
_default_lock = threading.Lock()


def observer(tracer_provider: object = None, meter_provider: object = None) -> Observer | None:
    """The OpenTelemetry observer, or ``None`` when opentelemetry-api is not installed.

    The first call creates the process-wide default on OTel's global providers (a no-op until
    the application configures an SDK) and subscribes the event listeners, so resilience events
    become span events (on whatever span is current), metrics and log records. With explicit
    providers, a new observer on them, for spans and the HTTP duration metric (events are
    counted on them by ``resilience.instrumentation.instrument``).
    """
    if not _default:
        with _default_lock:
            if not _default:
                try:
                    module = importlib.import_module(_INSTRUMENTATION)
                except ImportError:
                    _default.append(None)
                else:
                    _default.append(module.install_default())
    default = _default[0]
    if default is None or (tracer_provider is None and meter_provider is None):
        return default
    explicit: Observer = importlib.import_module(_INSTRUMENTATION).OpenTelemetry(
        tracer_provider, meter_provider
    )
    return explicit
