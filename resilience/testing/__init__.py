"""Helpers for testing code that uses resilience: a fake clock and an event recorder.

Public and documented: use them in your own tests. Nothing in the library imports this package.
"""

from resilience.testing._clock import FakeClock
from resilience.testing._recorder import EventRecorder

__all__ = ["EventRecorder", "FakeClock"]
