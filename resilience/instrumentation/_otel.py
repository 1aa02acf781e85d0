"""OpenTelemetry: CLIENT spans per HTTP attempt, INTERNAL spans per pipeline call, metrics.

Loaded lazily by ``resilience._events.observer()`` (nothing else in the library imports this
module). Names and attributes are listed in docs/telemetry.md. HTTP spans and the
``http.client.request.duration`` histogram follow the stable HTTP semantic conventions; unlike
opentelemetry-instrumentation-httpx, every attempt gets a span and a duration point, the ones
that raise included, and resends carry ``http.request.resend_count``.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Final

import opentelemetry.metrics._internal as _otel_metrics
from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import SpanKind, Status, StatusCode

from resilience import __version__, _events
from resilience._circuit.breaker import breakers
from resilience._circuit.state import CircuitState
from resilience._concurrency import concurrency_limiters
from resilience._ratelimit import limiters
from resilience._throttle import throttles
from resilience.deadletter._events import (
    DeadLetterParked,
    DeadLetterRecorded,
    DeadLetterReplayed,
    DeadLetterSucceeded,
)
from resilience.deadletter._queue import queues as dead_letter_queues
from resilience.instrumentation._logging import event_name, log_event
from resilience.instrumentation._redact import redact_url

__all__ = ["DURATION_BUCKETS", "OpenTelemetry", "error_type", "install_default", "redact_url"]

# The advisory boundaries of http.client.request.duration (semantic conventions, seconds).
DURATION_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
_KNOWN_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_RESEND: Final = "resilience.resend_count"
_POLICY: Final = "resilience.policy"


def error_type(error: BaseException) -> str:
    """The exception's fully qualified class name, as its package exports it
    (``httpx.ReadTimeout``, ``asyncio.CancelledError``; builtins bare)."""
    kind = type(error)
    name, module = kind.__qualname__, kind.__module__
    if module == "builtins":
        return name
    top = module.partition(".")[0]
    if getattr(sys.modules.get(top), name, None) is kind:
        return f"{top}.{name}"
    return f"{module}.{name}"


class _Attempt:
    """What ``start_attempt`` hands to ``end_attempt``: the span, its start and labels."""

    __slots__ = ("labels", "span", "started")

    def __init__(self, span: trace.Span, started: float, labels: dict[str, Any]) -> None:
        self.span = span
        self.started = started
        self.labels = labels


class _CallSpan:
    """One pipeline call's INTERNAL span, current while the call runs."""

    __slots__ = ("_span", "_token")

    def __init__(self, span: trace.Span) -> None:
        self._span = span
        self._token: object = None

    def __enter__(self) -> trace.Span:
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self._span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        otel_context.detach(self._token)  # type: ignore[arg-type]
        span = self._span
        if isinstance(exc, Exception):  # cancellation and exits leave the status unset
            span.set_attribute("error.type", error_type(exc))
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__qualname__))
        span.end()


def _global_tracer_set() -> bool:
    """Whether the application installed a global tracer provider (an SDK). OTel keeps it in a
    module global that is set once; reading it is ~40x cheaper than ``get_tracer_provider()``
    (which reads the environment on every call while nothing is set)."""
    return trace._TRACER_PROVIDER is not None


def _global_meter_set() -> bool:
    return _otel_metrics._METER_PROVIDER is not None


class OpenTelemetry:
    """The ``Observer`` on OpenTelemetry, and (``listen=True``) the listener for events.

    ``tracer_provider`` / ``meter_provider`` default to OTel's global ones, which are no-ops
    until the application installs an SDK. Until then a pipeline call costs one check, and an
    HTTP attempt one check plus, if a valid context is current (extracted upstream), the
    ``traceparent`` propagation: no span, no attributes, no metric point.
    """

    def __init__(
        self, tracer_provider: Any = None, meter_provider: Any = None, *, listen: bool = False
    ) -> None:
        # Span events go to whatever span is current, whichever provider made it: only the
        # default listener adds them, so a second listener (explicit meters) never doubles them.
        self._span_events = tracer_provider is None and meter_provider is None
        self._global_tracer = tracer_provider is None
        self._global_meter = meter_provider is None
        trace.get_tracer_provider()  # loads a provider named by OTEL_PYTHON_*_PROVIDER, if any
        metrics.get_meter_provider()
        self._tracer = trace.get_tracer("resilience", __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter("resilience", __version__, meter_provider=meter_provider)
        self._duration = meter.create_histogram(
            "http.client.request.duration",
            unit="s",
            description="Duration of HTTP client requests (one point per attempt).",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._counters: dict[type[_events.Event], Any] = {}
        if listen:
            by_name: dict[str, Any] = {}
            for kind, (name, unit, description) in _EVENT_COUNTERS.items():
                if name not in by_name:
                    by_name[name] = meter.create_counter(name, unit=unit, description=description)
                self._counters[kind] = by_name[name]
            meter.create_observable_gauge(
                "resilience.circuit_breaker.state",
                callbacks=[_observe_states],
                unit="{state}",
                description="1 for the breaker's current state, 0 for the others.",
            )
            meter.create_observable_counter(
                "resilience.circuit_breaker.calls",
                callbacks=[_observe_calls],
                unit="{call}",
                description="Calls through each breaker, by outcome.",
            )
            meter.create_observable_counter(
                "resilience.rate_limiter.decisions",
                callbacks=[_observe_decisions],
                unit="{decision}",
                description="Rate limiter decisions, by result (allowed, waited, rejected).",
            )
            meter.create_observable_gauge(
                "resilience.dead_letter.depth",
                callbacks=[_observe_depths],
                unit="{entry}",
                description="Dead letters waiting for a replay (ready) and given up on (parked).",
            )
            for name, callback, unit, description in _ADAPTIVE_INSTRUMENTS:
                create = (
                    meter.create_observable_counter
                    if name.endswith(("rejections", "refusals"))
                    else meter.create_observable_gauge
                )
                create(name, callbacks=[callback], unit=unit, description=description)

    # -- Observer: HTTP attempts -------------------------------------------------------------

    def start_attempt(self, request: Any) -> _Attempt | None:
        if (self._global_tracer and not _global_tracer_set()) and (
            self._global_meter and not _global_meter_set()
        ):
            # No SDK: nothing would be recorded. Still pass on a context extracted upstream.
            if trace.get_current_span().get_span_context().is_valid:
                propagate.inject(request.headers)
            return None
        url = request.url
        method = request.method
        scheme = url.scheme
        port = url.port or _DEFAULT_PORTS.get(scheme)
        known = method in _KNOWN_METHODS
        labels: dict[str, Any] = {
            "http.request.method": method if known else "_OTHER",
            "server.address": url.host,
            "server.port": port,
            "url.scheme": scheme,
        }
        attributes = {**labels, "url.full": redact_url(url)}
        if not known:
            attributes["http.request.method_original"] = method
        extensions = request.extensions
        resends = extensions.get(_RESEND, -1) + 1
        extensions[_RESEND] = resends
        if resends:
            attributes["http.request.resend_count"] = resends
        span = self._tracer.start_span(
            method if known else "HTTP", kind=SpanKind.CLIENT, attributes=attributes
        )
        propagate.inject(request.headers, context=trace.set_span_in_context(span))
        return _Attempt(span, time.perf_counter(), labels)

    def end_attempt(self, token: object, response: Any | None, error: BaseException | None) -> None:
        assert isinstance(token, _Attempt)
        elapsed = time.perf_counter() - token.started
        span, labels = token.span, token.labels
        if response is not None:
            status = response.status_code
            labels["http.response.status_code"] = status
            version = response.http_version.rpartition("/")[2]
            if version:
                labels["network.protocol.version"] = version
            if status >= 400:
                labels["error.type"] = str(status)
        elif isinstance(error, Exception):  # a deliberate cancellation is not an error
            labels["error.type"] = error_type(error)
        if span.is_recording():
            span.set_attributes(labels)
            if isinstance(error, Exception):
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, type(error).__qualname__))
            elif "error.type" in labels:
                span.set_status(Status(StatusCode.ERROR))
        span.end()
        self._duration.record(elapsed, labels)

    # -- Observer: pipeline calls ------------------------------------------------------------

    def call(self, name: str, function: str) -> _CallSpan | None:
        if self._global_tracer and not _global_tracer_set():
            return None  # no SDK: a span would record nothing and carry no new context
        span = self._tracer.start_span(
            name, kind=SpanKind.INTERNAL, attributes={"code.function.name": function}
        )
        return _CallSpan(span)

    # -- listener: resilience events ---------------------------------------------------------

    def on_event(self, event: _events.Event) -> None:
        """Count ``event``; the default listener also adds it to the current span."""
        kind = type(event)
        if self._span_events:
            span = trace.get_current_span()
            if span.is_recording():
                span.add_event(event_name(event), _event_attributes(event))
        counter = self._counters.get(kind)
        if counter is not None:
            counter.add(1, _metric_attributes(event))


# event kind -> (metric name, unit, description); attributes come from _metric_attributes.
_EVENT_COUNTERS: Final[dict[type[_events.Event], tuple[str, str, str]]] = {
    _events.RetryScheduled: (
        "resilience.retry.attempts",
        "{attempt}",
        "Retries scheduled (attempts after the first), by reason.",
    ),
    _events.RetryGaveUp: ("resilience.retry.gave_up", "{call}", "Calls that stopped retrying."),
    _events.RetryBudgetExhausted: (
        "resilience.retry.budget_exhausted",
        "{retry}",
        "Retries refused because the retry budget was spent.",
    ),
    _events.CircuitStateChanged: (
        "resilience.circuit_breaker.transitions",
        "{transition}",
        "Breaker state changes.",
    ),
    _events.BulkheadRejected: (
        "resilience.bulkhead.rejections",
        "{call}",
        "Calls the bulkhead refused.",
    ),
    _events.HedgeSent: ("resilience.hedge.sent", "{request}", "Hedged copies sent."),
    _events.DeadlineExceeded: (
        "resilience.deadline.exceeded",
        "{call}",
        "Timeouts and deadlines that ran out.",
    ),
    _events.FallbackUsed: (
        "resilience.fallback.used",
        "{call}",
        "Failures replaced by a fallback.",
    ),
    _events.IdempotentReplayed: (
        "resilience.idempotency.requests",
        "{request}",
        "Keyed requests the server did not run, by outcome (replayed, conflict, mismatch).",
    ),
    _events.IdempotencyConflict: (
        "resilience.idempotency.requests",
        "{request}",
        "Keyed requests the server did not run, by outcome (replayed, conflict, mismatch).",
    ),
    _events.IdempotencyMismatch: (
        "resilience.idempotency.requests",
        "{request}",
        "Keyed requests the server did not run, by outcome (replayed, conflict, mismatch).",
    ),
    _events.IdempotencyClaimLost: (
        "resilience.idempotency.claims_lost",
        "{request}",
        "Keyed requests whose claim another request took or finished while they ran.",
    ),
    _events.StoreUnavailable: (
        "resilience.store.outages",
        "{outage}",
        "Shared-store outages (one per outage, not per call).",
    ),
    DeadLetterRecorded: (
        "resilience.dead_letter.recorded",
        "{call}",
        "Keyed calls parked in a dead-letter queue, by why they ended.",
    ),
    DeadLetterReplayed: (
        "resilience.dead_letter.replayed",
        "{entry}",
        "Dead letters replayed, by outcome (succeeded, failed, parked).",
    ),
    DeadLetterSucceeded: (
        "resilience.dead_letter.succeeded",
        "{entry}",
        "Dead letters a replay finished (removed from the queue).",
    ),
    DeadLetterParked: (
        "resilience.dead_letter.parked",
        "{entry}",
        "Dead letters replays gave up on (kept in the parked state).",
    ),
}


_IDEMPOTENCY_OUTCOMES: Final = {
    _events.IdempotentReplayed: "replayed",
    _events.IdempotencyConflict: "conflict",
    _events.IdempotencyMismatch: "mismatch",
}


def _event_attributes(event: _events.Event) -> dict[str, Any]:
    fields = dataclasses.asdict(event)
    attributes = {_POLICY: fields.pop("policy")}
    for name, value in fields.items():
        attributes[f"resilience.{name}"] = value
    return attributes


def _metric_attributes(event: _events.Event) -> dict[str, Any]:
    """Low-cardinality labels: the policy and, per kind, one bounded dimension."""
    attributes: dict[str, Any] = {_POLICY: event.policy}
    if isinstance(event, _events.RetryScheduled):
        attributes["resilience.reason"] = event.reason.split(" ", 1)[0]
    elif isinstance(event, _events.RetryGaveUp):
        attributes["resilience.why"] = event.why
    elif isinstance(event, _events.CircuitStateChanged):
        attributes["resilience.circuit_breaker.from"] = event.old
        attributes["resilience.circuit_breaker.to"] = event.new
    elif type(event) in _IDEMPOTENCY_OUTCOMES:
        attributes["resilience.outcome"] = _IDEMPOTENCY_OUTCOMES[type(event)]
    elif isinstance(event, DeadLetterRecorded):
        attributes["resilience.why"] = event.why
    elif isinstance(event, DeadLetterReplayed):
        attributes["resilience.outcome"] = event.outcome
    return attributes


def _observe_states(options: CallbackOptions) -> Iterable[Observation]:
    for breaker in list(breakers):
        current = breaker.state
        for state in CircuitState:
            yield Observation(
                1 if state is current else 0,
                {_POLICY: breaker.name, "resilience.circuit_breaker.state": state.value},
            )


def _observe_calls(options: CallbackOptions) -> Iterable[Observation]:
    for breaker in list(breakers):
        totals = breaker.metrics
        for outcome, value in (
            ("success", totals.total_successes),
            ("failure", totals.total_failures),
            ("rejected", totals.total_rejections),
            ("interrupted", totals.total_interrupted),
        ):
            yield Observation(value, {_POLICY: breaker.name, "resilience.outcome": outcome})


def _observe_decisions(options: CallbackOptions) -> Iterable[Observation]:
    for limiter in list(limiters):
        for result, value in zip(("allowed", "waited", "rejected"), limiter.counts, strict=True):
            yield Observation(value, {_POLICY: limiter.name, "resilience.result": result})


def _observe_limits(options: CallbackOptions) -> Iterable[Observation]:
    for limiter in list(concurrency_limiters):
        yield Observation(limiter.limit, {_POLICY: limiter.name})


def _observe_in_flight(options: CallbackOptions) -> Iterable[Observation]:
    for limiter in list(concurrency_limiters):
        yield Observation(limiter.in_flight, {_POLICY: limiter.name})


def _observe_rejections(options: CallbackOptions) -> Iterable[Observation]:
    for limiter in list(concurrency_limiters):
        yield Observation(limiter.rejections, {_POLICY: limiter.name})


def _observe_probabilities(options: CallbackOptions) -> Iterable[Observation]:
    for throttle in list(throttles):
        yield Observation(throttle.probability, {_POLICY: throttle.name})


def _observe_refusals(options: CallbackOptions) -> Iterable[Observation]:
    for throttle in list(throttles):
        yield Observation(throttle.refusals, {_POLICY: throttle.name})


# Live adaptive limiters and throttles, read when metrics are collected (no per-call cost).
_ADAPTIVE_INSTRUMENTS: Final = (
    (
        "resilience.concurrency.limit",
        _observe_limits,
        "{call}",
        "The adaptive concurrency limit.",
    ),
    (
        "resilience.concurrency.in_flight",
        _observe_in_flight,
        "{call}",
        "Calls holding an adaptive concurrency slot.",
    ),
    (
        "resilience.concurrency.rejections",
        _observe_rejections,
        "{call}",
        "Calls the adaptive concurrency limit refused.",
    ),
    (
        "resilience.throttle.probability",
        _observe_probabilities,
        "1",
        "The share of calls the client-side throttle refuses now.",
    ),
    (
        "resilience.throttle.refusals",
        _observe_refusals,
        "{call}",
        "Calls the client-side throttle refused locally.",
    ),
)


def _observe_depths(options: CallbackOptions) -> Iterable[Observation]:
    for queue in list(dead_letter_queues):
        try:
            depth = queue.depth()  # one store read per queue and collection
        except Exception:  # a store that is down has no depth to report; its queue logs it
            continue
        for state, value in zip(("ready", "parked"), depth, strict=True):
            yield Observation(value, {_POLICY: queue.name, "resilience.dead_letter.state": state})


def install_default() -> OpenTelemetry:
    """The process-wide observer on the global providers, its event listener and the logging
    listener subscribed (called once, by ``resilience._events.observer()``)."""
    default = OpenTelemetry(listen=True)
    _events.subscribe(default.on_event)
    _events.subscribe(log_event)
    return default
