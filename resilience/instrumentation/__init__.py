"""OpenTelemetry and logging for resilience: spans, metrics and log records from its events.

Nothing needs importing for the defaults: a transport or pipeline with ``tracing=True`` (the
default) loads the OpenTelemetry observer on first use when ``opentelemetry-api`` is installed.
Use this module to wire explicit providers (``instrument``), to log events without
OpenTelemetry (``log_events``), to choose the query parameters spans redact
(``set_redacted_query_params``), or to name things. See docs/telemetry.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from resilience import _events
from resilience._public import publish as _publish
from resilience.instrumentation._logging import event_name, log_event
from resilience.instrumentation._redact import REDACTED_QUERY_PARAMS, set_redacted_query_params

__all__ = [
    "REDACTED_QUERY_PARAMS",
    "event_name",
    "instrument",
    "log_event",
    "log_events",
    "set_redacted_query_params",
]

_publish(__name__, globals(), __all__)


def instrument(tracer_provider: Any = None, meter_provider: Any = None) -> Callable[[], None]:
    """Turn resilience events into span events and metrics on the given providers.

    With no providers, make sure the process-wide default (global providers, span events on
    the current span, logging) is installed, as building a traced transport would. With
    explicit providers (tests, or an application that keeps its providers out of the globals),
    also subscribe a listener counting events on that meter provider.
    Return a function that undoes what this call subscribed. Needs ``opentelemetry-api``.
    """
    if _events.observer() is None:  # the default adds events to the current span
        raise ImportError(
            "instrument() needs opentelemetry-api: pip install 'resilience-patterns[otel]'"
        )
    if tracer_provider is None and meter_provider is None:
        return _nothing
    from resilience.instrumentation._otel import OpenTelemetry

    telemetry = OpenTelemetry(tracer_provider, meter_provider, listen=True)
    return _events.subscribe(telemetry.on_event)


def log_events() -> Callable[[], None]:
    """Log resilience events on the ``resilience`` logger (without OpenTelemetry); return the
    function that stops it. A no-op when they are logged already (by the default observer)."""
    if log_event in _events.listeners:
        return _nothing
    return _events.subscribe(log_event)


def _nothing() -> None:
    return None
