"""What tracing costs: tracing off vs on with the OpenTelemetry API only vs on with the SDK.

Same loopback server and method as ``http`` (interleaved rounds, keep-alive, one request at a
time): a GET through ``ResilientTransport`` (retry + breaker + deadline) with ``tracing=False``;
with tracing on and no SDK configured (the global providers are OTel's no-op proxies: what a
user gets by default); and with an SDK tracer provider (batch span processor, exporter that
drops) and an SDK meter provider. Beside them, a bare client instrumented by
opentelemetry-instrumentation-httpx with the same SDK providers, for scale.

Also a decorated function (``Pipeline(Retry)`` around a function returning its argument), where
the INTERNAL span is a large share of the call.

Target (issue 5): with the API only, within 5 % of tracing off (paired throughput >= 0.95).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import httpx
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from benchmarks._harness import Case, header, paired, run_cases, sizes
from benchmarks.http import loopback_server, report
from resilience import Backoff, CircuitBreaker, Pipeline, Retry, RetryBudget
from resilience.http import ResilientTransport

PEERS = [
    "resilience",
    "httpx",
    "opentelemetry-api",
    "opentelemetry-sdk",
    "opentelemetry-instrumentation-httpx",
]


class _Dropping(SpanExporter):
    """Accepts every batch and keeps nothing: the SDK's own cost, without an exporter's."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def sdk_providers() -> dict[str, Any]:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(_Dropping()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return {"tracer_provider": tracer_provider, "meter_provider": meter_provider}


def transport(**tracing: Any) -> ResilientTransport:
    return ResilientTransport(
        retry=Retry(3, backoff=Backoff(initial=0.05, maximum=1.0), budget=RetryBudget()),
        breaker=CircuitBreaker("bench", minimum_calls=20),
        deadline=5.0,
        **tracing,
    )


def http_cases(url: str, sdk: dict[str, Any]) -> list[Case]:
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    ok = lambda i: 200  # noqa: E731
    off = httpx.Client(transport=transport(tracing=False))
    api_only = httpx.Client(transport=transport())
    with_sdk = httpx.Client(transport=transport(**sdk))
    peer = httpx.Client()
    HTTPXClientInstrumentor.instrument_client(peer, tracer_provider=sdk["tracer_provider"])
    bare = httpx.Client()
    group = "sync GET, keep-alive"
    return [
        Case("tracing off", lambda i: off.get(url).status_code, expect=ok, group=group),
        Case("tracing on, API only", lambda i: api_only.get(url).status_code, expect=ok),
        Case("tracing on, SDK (batch)", lambda i: with_sdk.get(url).status_code, expect=ok),
        Case("bare httpx.Client", lambda i: bare.get(url).status_code, expect=ok),
        Case(
            "bare + otel-instrumentation-httpx (SDK)",
            lambda i: peer.get(url).status_code,
            expect=ok,
        ),
    ]


def pipeline_cases(sdk: dict[str, Any]) -> list[Case]:
    def work(i: int) -> int:
        return i

    return [
        Case("Pipeline(Retry), tracing off", Pipeline(Retry(3), tracing=False)(work)),
        Case("Pipeline(Retry), API only", Pipeline(Retry(3))(work)),
        Case(
            "Pipeline(Retry), SDK (batch)",
            Pipeline(Retry(3), tracer_provider=sdk["tracer_provider"])(work),
        ),
    ]


def main(argv: list[str] | None = None) -> None:
    rounds, batch, budget = sizes(argv, __doc__, quick=(3, 200, 10.0), full=(11, 1_000, 120.0))
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    print(header(PEERS))
    print(f"# {rounds} interleaved rounds of {batch} calls; x bare = throughput vs first row\n")
    sdk = sdk_providers()
    with loopback_server() as url:
        http = run_cases(http_cases(url, sdk), rounds=rounds, batch=batch, max_seconds=budget)
    print(report(http, "tracing off"))
    print()
    calls = run_cases(pipeline_cases(sdk), rounds=rounds, batch=batch * 20, max_seconds=budget)
    print(report(calls, "Pipeline(Retry), tracing off"))
    sdk["tracer_provider"].shutdown()
    sdk["meter_provider"].shutdown()
    http_ratio = paired(http, "tracing off", "tracing on, API only")
    call_ratio = paired(calls, "Pipeline(Retry), tracing off", "Pipeline(Retry), API only")
    off = next(r for r in calls if r.name == "Pipeline(Retry), tracing off").median
    api = next(r for r in calls if r.name == "Pipeline(Retry), API only").median
    print(
        f"\nAPI only vs tracing off (paired throughput), HTTP GET: {http_ratio:.3f} "
        f"(target >= 0.95): {'MET' if http_ratio >= 0.95 else 'MISSED'}; decorated no-op "
        f"function: {call_ratio:.3f} (+{api - off:.2f} µs per call)"
    )


if __name__ == "__main__":
    main()
