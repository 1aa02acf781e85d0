"""Helpers for testing code that uses resilience: a fake clock, an event recorder, and httpx
transports that inject faults.

Public and documented: use them in your own tests. Nothing in the library imports this package.
"""

from resilience.testing._clock import FakeClock
from resilience.testing._faults import AsyncFaultInjectingTransport, Fault, FaultInjectingTransport
from resilience.testing._recorder import EventRecorder

__all__ = [
    "AsyncFaultInjectingTransport",
    "EventRecorder",
    "FakeClock",
    "Fault",
    "FaultInjectingTransport",
]
