"""Traces and metrics of an order service calling a flaky payments service, via OpenTelemetry.

A payments server on 127.0.0.1 answers ``429 Retry-After: 0`` to every other charge (a
refusal: the charge was not made, so the POST may be sent again). The order
service charges through ``ResilientTransport`` inside an ``order`` span. With the SDK configured
on the global providers (nothing resilience-specific to wire), each attempt is a CLIENT span
(``http.request.resend_count`` on resends, a fresh ``traceparent`` each), the retry decision is
an event on the ``order`` span, and ``http.client.request.duration`` / ``resilience.*`` metrics
are recorded. Spans print one line each to the console; when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is
set (e.g. ``http://127.0.0.1:4318`` for a local Jaeger or an OTel collector in front of Zipkin)
they are also sent over OTLP/HTTP.

Run: ``.venv/bin/python examples/telemetry.py``
"""

from __future__ import annotations

import itertools
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

from resilience import Backoff, Retry
from resilience.http import ResilientTransport

ORDERS = 4


class Payments(BaseHTTPRequestHandler):
    """Every other charge is refused with 429 and ``Retry-After: 0``."""

    counter = itertools.count()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        busy = next(self.counter) % 2 == 0
        self.send_response(429 if busy else 201)
        if busy:
            self.send_header("Retry-After", "0")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return None  # quiet


def one_line(span: ReadableSpan) -> str:
    """A compact console line per span: kind, name, status, the attributes that matter."""
    attributes = dict(span.attributes or {})
    shown = {
        key: attributes[key]
        for key in ("http.response.status_code", "http.request.resend_count", "error.type")
        if key in attributes
    }
    events = [event.name for event in span.events]
    parent = f" parent={span.parent.span_id:016x}" if span.parent else ""
    return (
        f"span {span.kind.name:<8} {span.name:<6} id={span.context.span_id:016x}{parent} "  # type: ignore[union-attr]
        f"status={span.status.status_code.name} {shown} events={events}\n"
    )


def configure() -> tuple[TracerProvider, InMemoryMetricReader]:
    """What an application does once at startup; resilience uses the global providers."""
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter(formatter=one_line)))
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(tracer_provider)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return tracer_provider, reader


def main() -> None:
    tracer_provider, reader = configure()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Payments)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    tracer = trace.get_tracer("orders")
    transport = ResilientTransport(retry=Retry(3, backoff=Backoff(initial=0.01)), deadline=5.0)
    try:
        with httpx.Client(base_url=url, transport=transport) as client:
            for order in range(ORDERS):
                with tracer.start_as_current_span("order"):
                    response = client.post("/charges", json={"order": order, "cents": 1250})
                    print(f"order {order}: payments answered {response.status_code}")
    finally:
        server.shutdown()
        server.server_close()
    tracer_provider.force_flush()
    data = reader.get_metrics_data()
    print("metrics:")
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    value = getattr(point, "count", None) or getattr(point, "value", None)
                    labels = {
                        key: point.attributes[key]
                        for key in ("http.response.status_code", "resilience.reason")
                        if point.attributes and key in point.attributes
                    }
                    print(f"  {metric.name} {labels} = {value}")
    tracer_provider.shutdown()


if __name__ == "__main__":
    main()
