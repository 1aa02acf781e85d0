"""Helpers for testing code that uses resilience: a fake clock, an event recorder, httpx
transports that inject faults, and real servers on 127.0.0.1 for ASGI and WSGI apps.

Public and documented: use them in your own tests. Nothing in the library imports this package.
"""

from resilience._public import publish as _publish
from resilience.testing._clock import FakeClock
from resilience.testing._faults import AsyncFaultInjectingTransport, Fault, FaultInjectingTransport
from resilience.testing._recorder import EventRecorder
from resilience.testing._servers import serve_asgi, serve_wsgi

__all__ = [
    "AsyncFaultInjectingTransport",
    "EventRecorder",
    "FakeClock",
    "Fault",
    "FaultInjectingTransport",
    "serve_asgi",
    "serve_wsgi",
]

_publish(__name__, globals(), __all__)
