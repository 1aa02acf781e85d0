"""OpenTelemetry spans, metrics and logs from the transports, pipelines and policy events.

The SDK's in-memory exporter and metric reader are wired as explicit providers (never the
globals, which a process may set only once); the HTTP tests talk to the real server.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from resilience import (
    Backoff,
    CircuitBreaker,
    CircuitOpenError,
    Hedge,
    Pipeline,
    RateLimiter,
    Retry,
    _events,
)
from resilience.http import AsyncResilientTransport, ResilientTransport
from resilience.instrumentation import (
    REDACTED_QUERY_PARAMS,
    instrument,
    log_events,
    set_redacted_query_params,
)
from resilience.instrumentation._otel import error_type, redact_url
from resilience.testing import FakeClock
from tests.http_server import Reply, dead_origin
from tests.test_http_transport import Driver

FAST = Backoff(initial=0.001, maximum=0.002)


class Telemetry:
    """An SDK tracer provider and meter provider that keep everything in memory."""

    def __init__(self) -> None:
        self.spans_out = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans_out))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    @property
    def providers(self) -> dict[str, Any]:
        return {"tracer_provider": self.tracer_provider, "meter_provider": self.meter_provider}

    def spans(self, kind: SpanKind | None = None) -> list[ReadableSpan]:
        found = self.spans_out.get_finished_spans()
        return [span for span in found if kind is None or span.kind is kind]

    def points(self, metric: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        if data is None:
            return []
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for found in scope.metrics
            if found.name == metric
            for point in found.data.data_points
        ]


@pytest.fixture
def otel() -> Iterator[Telemetry]:
    telemetry = Telemetry()
    yield telemetry
    telemetry.tracer_provider.shutdown()
    telemetry.meter_provider.shutdown()


@pytest.fixture(params=["sync", "async"])
def driver(request: pytest.FixtureRequest) -> Driver:
    return Driver(request.param)


def test_each_attempt_is_a_client_span_with_its_resend_count(
    driver: Driver, http_server: Any, otel: Telemetry
) -> None:
    """A GET answered 500, 500, 200: three CLIENT spans, resend counts absent, 1, 2, error
    statuses on the 500s, three distinct traceparents at the server, three duration points."""
    http_server.script("/r", [Reply(500), Reply(500), Reply(200)])
    transport = driver.transport(retry=Retry(3, backoff=FAST), **otel.providers)
    response = driver.send(transport, "GET", f"{http_server.url}/r?q=1")
    assert response.status_code == 200

    spans = otel.spans(SpanKind.CLIENT)
    assert [span.name for span in spans] == ["GET", "GET", "GET"]
    attributes = [dict(span.attributes or {}) for span in spans]
    assert [a.get("http.request.resend_count") for a in attributes] == [None, 1, 2]
    assert [a["http.response.status_code"] for a in attributes] == [500, 500, 200]
    assert [a.get("error.type") for a in attributes] == ["500", "500", None]
    assert [span.status.status_code for span in spans] == [
        StatusCode.ERROR,
        StatusCode.ERROR,
        StatusCode.UNSET,
    ]
    first = attributes[0]
    assert first["http.request.method"] == "GET"
    assert first["server.address"] == "127.0.0.1"
    assert first["server.port"] == http_server.port
    assert first["url.full"] == f"{http_server.url}/r?q=1"
    assert first["network.protocol.version"] == "1.1"

    parents = [received.headers.get("traceparent") for received in http_server.received("/r")]
    assert len(set(parents)) == 3 and None not in parents
    span_ids = [f"{span.context.span_id:016x}" for span in spans]
    assert [parent.split("-")[2] for parent in parents] == span_ids  # type: ignore[union-attr]

    points = otel.points("http.client.request.duration")
    assert sum(point.count for point in points) == 3
    statuses = sorted(point.attributes["http.response.status_code"] for point in points)
    assert statuses == [200, 500]  # two series: 500 (count 2) and 200 (count 1)
    assert all("url.full" not in point.attributes for point in points)


def test_an_attempt_that_raises_gets_a_span_and_a_duration_point(
    driver: Driver, otel: Telemetry
) -> None:
    """Connection refused on both attempts: two ERROR spans typed by the exception, two points."""
    transport = driver.transport(retry=Retry(2, backoff=FAST), **otel.providers)
    with pytest.raises(httpx.ConnectError):
        driver.send(transport, "GET", f"{dead_origin()}/x")
    spans = otel.spans(SpanKind.CLIENT)
    assert len(spans) == 2
    for span in spans:
        assert span.status.status_code is StatusCode.ERROR
        assert (span.attributes or {})["error.type"] == "httpx.ConnectError"
        assert any(event.name == "exception" for event in span.events)
    points = otel.points("http.client.request.duration")
    assert sum(point.count for point in points) == 2
    assert {point.attributes["error.type"] for point in points} == {"httpx.ConnectError"}


def test_url_full_never_carries_credentials(
    driver: Driver, http_server: Any, otel: Telemetry
) -> None:
    """``http://user:pass@host`` is recorded as ``http://REDACTED:REDACTED@host``."""
    http_server.script("/secret", [Reply(200)])
    url = f"http://user:pass@127.0.0.1:{http_server.port}/secret"
    driver.send(driver.transport(**otel.providers), "GET", url)
    (span,) = otel.spans(SpanKind.CLIENT)
    full = (span.attributes or {})["url.full"]
    assert "pass" not in full and "user" not in full
    assert full == f"http://REDACTED:REDACTED@127.0.0.1:{http_server.port}/secret"


def test_signed_url_secrets_are_redacted() -> None:
    """Query parameters that carry signatures are replaced, others kept."""
    url = httpx.URL("https://127.0.0.1/o?X-Goog-Signature=abc&part=2&sig=s3cr3t")
    redacted = redact_url(url)
    assert "abc" not in redacted and "s3cr3t" not in redacted
    assert "part=2" in redacted and redacted.count("REDACTED") == 2


def test_presigned_s3_urls_lose_their_signature_and_credentials(
    driver: Driver, http_server: Any, otel: Telemetry
) -> None:
    """A SigV4 presigned URL sent to a real server is recorded with its signature, credential
    and session token replaced (names kept), its other parameters as they were."""
    http_server.script("/bucket/report.csv", [Reply(200)])
    query = (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20260101%2Fus-east-1"
        "&X-Amz-Security-Token=FQoGZXIvYXdzEXAMPLE&X-Amz-Signature=f00dfeed&X-Amz-Expires=60"
    )
    url = f"http://127.0.0.1:{http_server.port}/bucket/report.csv?{query}"
    driver.send(driver.transport(**otel.providers), "GET", url)
    (span,) = otel.spans(SpanKind.CLIENT)
    full = str((span.attributes or {})["url.full"])
    for secret in ("AKIAEXAMPLE", "FQoGZXIvYXdzEXAMPLE", "f00dfeed"):
        assert secret not in full
    assert "X-Amz-Signature=REDACTED" in full and "X-Amz-Credential=REDACTED" in full
    assert "X-Amz-Security-Token=REDACTED" in full and "X-Amz-Expires=60" in full


def test_the_redacted_parameters_are_configurable() -> None:
    """An application adds its own secret parameter to the default list (matched in any
    case), then restores the default; a bare string is refused, naming the parameter."""
    url = httpx.URL("https://127.0.0.1/o?Token=abc&sig=s3cr3t&part=2")
    set_redacted_query_params({*REDACTED_QUERY_PARAMS, "token"})
    try:
        redacted = redact_url(url)
    finally:
        set_redacted_query_params()
    assert "abc" not in redacted and "s3cr3t" not in redacted and "part=2" in redacted
    assert "abc" in redact_url(url)  # the default again
    with pytest.raises(TypeError, match="names"):
        set_redacted_query_params("token")


def test_error_type_is_the_public_qualified_name() -> None:
    """httpx's private module path is dropped; builtins stay bare."""
    assert error_type(httpx.ReadTimeout("t")) == "httpx.ReadTimeout"
    assert error_type(ValueError()) == "ValueError"
    assert error_type(CircuitOpenError("b", 1.0)) == "resilience.CircuitOpenError"


def test_tracing_false_records_nothing(driver: Driver, http_server: Any, otel: Telemetry) -> None:
    """``tracing=False`` turns spans, propagation and the duration metric off."""
    http_server.script("/q", [Reply(200)])
    driver.send(driver.transport(tracing=False, **otel.providers), "GET", f"{http_server.url}/q")
    assert otel.spans() == []
    assert otel.points("http.client.request.duration") == []
    assert http_server.received("/q")[0].headers.get("traceparent") is None


def test_tracing_must_be_a_bool() -> None:
    """A misspelt switch fails at construction, naming the parameter."""
    with pytest.raises(TypeError, match="tracing"):
        Pipeline(Retry(2), tracing="no")  # type: ignore[arg-type]


def test_retries_show_as_events_on_the_pipeline_span(otel: Telemetry, clock: FakeClock) -> None:
    """A pipeline call is one INTERNAL span; its failed attempts are retry events on it."""
    undo = instrument(**otel.providers)
    try:
        outcomes = iter([ValueError("a"), ValueError("b"), "ok"])

        @Pipeline(
            Retry(3, on=ValueError, backoff=FAST, clock=clock),
            tracer_provider=otel.tracer_provider,
        )
        def work() -> str:
            outcome = next(outcomes)
            if isinstance(outcome, Exception):
                raise outcome
            return outcome

        assert work() == "ok"
    finally:
        undo()
    (span,) = otel.spans(SpanKind.INTERNAL)
    assert span.name.endswith("work")
    assert span.status.status_code is StatusCode.UNSET
    retries = [event for event in span.events if event.name == "resilience.retry.scheduled"]
    assert [(event.attributes or {})["resilience.attempt"] for event in retries] == [1, 2]
    assert {(event.attributes or {})["resilience.reason"] for event in retries} == {"ValueError"}
    (attempts,) = otel.points("resilience.retry.attempts")
    assert attempts.value == 2


def test_a_failing_pipeline_call_marks_its_span(otel: Telemetry, colour: Any) -> None:
    """The span of a call that raises has status ERROR and the exception's type (both
    colours: the async shell keeps the span current across awaits)."""

    def fail() -> None:
        raise KeyError("k")

    guarded = colour.wrap(Pipeline(Retry(1), name="lookup", **_tp(otel)), fail)
    with pytest.raises(KeyError):
        guarded()
    (span,) = otel.spans(SpanKind.INTERNAL)
    assert span.name == "lookup"
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "KeyError"


def lookup_user(user: str) -> str:
    """A module-level function, so its qualified name is its name."""
    return user.upper()


async def lookup_user_async(user: str) -> str:
    """The coroutine twin of ``lookup_user``."""
    return user.upper()


@pytest.mark.parametrize("function", [lookup_user, lookup_user_async])
def test_pipeline_spans_are_named_after_the_operation(otel: Telemetry, function: Any) -> None:
    """An unnamed pipeline (``.name`` "pipeline") names each span after the function it
    guards, one name per operation; a named one uses its name. ``code.function.name`` is the
    function's module and qualified name either way (it was the pipeline's name when one was
    given)."""
    unnamed, named = Pipeline(Retry(1), **_tp(otel)), Pipeline(Retry(1), name="users", **_tp(otel))
    assert unnamed.name == "pipeline"
    for pipeline in (unnamed, named):
        result = pipeline(function)("ada")
        assert (asyncio.run(result) if inspect.isawaitable(result) else result) == "ADA"
    spans = [(span.name, dict(span.attributes or {})) for span in otel.spans(SpanKind.INTERNAL)]
    qualified = {"code.function.name": f"{__name__}.{function.__qualname__}"}
    assert spans == [(function.__name__, qualified), ("users", qualified)]


def _tp(otel: Telemetry) -> dict[str, Any]:
    return {"tracer_provider": otel.tracer_provider}


def test_breaker_opening_is_one_event_and_moves_the_gauge(
    otel: Telemetry, clock: FakeClock
) -> None:
    """Failures open the breaker: one transition event on the current span, the state gauge
    reads open, the calls counter counts the failures and the rejection."""
    undo = instrument(**otel.providers)
    breaker = CircuitBreaker(
        "payments-test", minimum_calls=2, failure_rate=0.5, open_for=10.0, clock=clock
    )

    def gauge() -> dict[str, int]:
        return {
            point.attributes["resilience.circuit_breaker.state"]: point.value
            for point in otel.points("resilience.circuit_breaker.state")
            if point.attributes["resilience.policy"] == "payments-test"
        }

    try:
        assert gauge() == {"closed": 1, "open": 0, "half_open": 0}

        @breaker
        def call() -> None:
            raise OSError("down")

        tracer = otel.tracer_provider.get_tracer("test")
        with tracer.start_as_current_span("request"):
            for _ in range(2):
                with pytest.raises(OSError):
                    call()
            with pytest.raises(CircuitOpenError):
                call()
    finally:
        undo()
    (request,) = otel.spans()
    changes = [e for e in request.events if e.name == "resilience.circuit_breaker.state_changed"]
    assert len(changes) == 1
    assert (changes[0].attributes or {})["resilience.new"] == "open"
    assert gauge() == {"closed": 0, "open": 1, "half_open": 0}
    calls = {
        point.attributes["resilience.outcome"]: point.value
        for point in otel.points("resilience.circuit_breaker.calls")
        if point.attributes["resilience.policy"] == "payments-test"
    }
    assert calls["failure"] == 2 and calls["rejected"] == 1 and calls["success"] == 0


def test_rate_limiter_decisions_are_counted_by_result(otel: Telemetry, clock: FakeClock) -> None:
    """Admitted and refused calls land in one counter, split by ``resilience.result``."""
    undo = instrument(**otel.providers)
    limiter = RateLimiter(1, per=10.0, name="decisions-test", clock=clock)
    try:
        assert limiter.try_acquire().allowed
        assert not limiter.try_acquire().allowed
    finally:
        undo()
    results = {
        point.attributes["resilience.result"]: point.value
        for point in otel.points("resilience.rate_limiter.decisions")
        if point.attributes["resilience.policy"] == "decisions-test"
    }
    assert results == {"allowed": 1, "waited": 0, "rejected": 1}


def test_events_are_logged_at_their_levels(
    caplog: pytest.LogCaptureFixture, clock: FakeClock
) -> None:
    """A state change to open is a WARNING with structured fields; retries stay at DEBUG."""
    stop = log_events()
    try:
        with caplog.at_level(logging.DEBUG, logger="resilience"):
            breaker = CircuitBreaker("logged", minimum_calls=1, clock=clock)
            breaker.open()
            Pipeline(Retry(2, backoff=FAST, clock=clock), tracing=False).call(_fail_once(), "x")
    finally:
        stop()
    opened = [r for r in caplog.records if getattr(r, "resilience_event", "").endswith("changed")]
    assert len(opened) == 1
    assert opened[0].levelno == logging.WARNING
    assert opened[0].resilience_policy == "logged"  # type: ignore[attr-defined]
    assert opened[0].resilience_new == "open"  # type: ignore[attr-defined]
    retried = [r for r in caplog.records if r.resilience_event == "resilience.retry.scheduled"]  # type: ignore[attr-defined]
    assert [r.levelno for r in retried] == [logging.DEBUG]


def _fail_once() -> Any:
    calls = []

    def work(value: str) -> str:
        calls.append(value)
        if len(calls) == 1:
            raise ConnectionError("once")
        return value

    return work


def test_default_observer_is_shared_and_subscribed() -> None:
    """The default observer is created once and its listeners are subscribed (conftest made
    it before the first test)."""
    first = _events.observer()
    assert first is not None and _events.observer() is first
    owners = {getattr(listener, "__self__", None) for listener in _events.listeners}
    assert first in owners


def test_beside_opentelemetry_instrumentation_httpx_no_span_is_doubled(
    driver: Driver, http_server: Any, otel: Telemetry
) -> None:
    """With HTTPXClientInstrumentor active, its span per attempt stands and ours steps aside:
    one CLIENT span per request that reached the wire, never two."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    http_server.script("/i", [Reply(503), Reply(200)])
    instrumentor = HTTPXClientInstrumentor()
    instrumentor.instrument(tracer_provider=otel.tracer_provider)
    try:
        transport = driver.transport(retry=Retry(2, backoff=FAST), **otel.providers)
        assert driver.send(transport, "GET", f"{http_server.url}/i").status_code == 200
    finally:
        instrumentor.uninstrument()
    spans = otel.spans(SpanKind.CLIENT)
    assert len(spans) == 2 == len(http_server.received("/i"))
    assert {span.instrumentation_scope.name for span in spans} == {  # type: ignore[union-attr]
        "opentelemetry.instrumentation.httpx"
    }


def test_retry_events_land_on_the_callers_span(http_server: Any, otel: Telemetry) -> None:
    """The transport's retry decisions are events on the span current around the request."""
    http_server.script("/c", [Reply(503), Reply(200)])
    transport = ResilientTransport(retry=Retry(2, backoff=FAST), **otel.providers)
    tracer = otel.tracer_provider.get_tracer("app")
    with httpx.Client(transport=transport) as client, tracer.start_as_current_span("checkout"):
        assert client.get(f"{http_server.url}/c").status_code == 200
    (checkout,) = otel.spans(SpanKind.INTERNAL)
    (retry,) = [e for e in checkout.events if e.name == "resilience.retry.scheduled"]
    assert (retry.attributes or {})["resilience.attempt"] == 1
    attempts = otel.spans(SpanKind.CLIENT)
    assert all(span.parent is not None for span in attempts)
    assert {span.parent.span_id for span in attempts} == {checkout.context.span_id}  # type: ignore[union-attr]


def test_a_cancelled_hedge_loser_ends_its_span_without_error_status(
    http_server: Any, otel: Telemetry
) -> None:
    """The slow first copy loses to the hedge and is cancelled: its span ends with neither an
    error status nor ``error.type`` (a deliberate cancellation is not an error)."""
    http_server.script("/h", [Reply(200, delay=2.0), Reply(200, body=b"fast")])

    async def go() -> httpx.Response:
        transport = AsyncResilientTransport(hedge=Hedge(0.05), **otel.providers)
        async with httpx.AsyncClient(transport=transport) as client:
            return await client.get(f"{http_server.url}/h")

    assert asyncio.run(go()).content == b"fast"
    spans = otel.spans(SpanKind.CLIENT)
    assert len(spans) == 2
    answered = [span for span in spans if "http.response.status_code" in (span.attributes or {})]
    loser = next(span for span in spans if span not in answered)
    assert loser.status.status_code is StatusCode.UNSET
    assert "error.type" not in (loser.attributes or {})
    winner = next(span for span in spans if span is not loser)
    assert (winner.attributes or {})["http.request.resend_count"] == 1


def test_without_an_sdk_attempts_record_nothing_but_pass_the_context_on(
    http_server: Any, otel: Telemetry
) -> None:
    """On the global (no-op) providers an attempt makes no span and no point, yet a context
    that is current (extracted upstream) still reaches the server as ``traceparent``."""
    http_server.script("/p", [Reply(200), Reply(200)])
    with httpx.Client(transport=ResilientTransport()) as client:
        client.get(f"{http_server.url}/p")
        upstream = otel.tracer_provider.get_tracer("upstream")
        with upstream.start_as_current_span("incoming") as incoming:
            client.get(f"{http_server.url}/p")
    first, second = http_server.received("/p")
    assert first.headers.get("traceparent") is None
    trace_id = f"{incoming.get_span_context().trace_id:032x}"
    span_id = f"{incoming.get_span_context().span_id:016x}"
    assert (second.headers.get("traceparent") or "").startswith(f"00-{trace_id}-{span_id}-")
    assert [span.name for span in otel.spans()] == ["incoming"]


def test_without_an_sdk_a_pipeline_call_makes_no_span(otel: Telemetry) -> None:
    """A traced pipeline on the global no-op provider runs the call and records nothing."""
    assert Pipeline(Retry(2))(lambda value: value * 2)(21) == 42
    assert otel.spans() == []
