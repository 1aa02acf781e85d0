"""resilience: retries with budgets, circuit breakers, deadlines and bulkheads for Python services.

Every policy is a decorator for plain and coroutine functions; ``Pipeline`` composes them.
"""

from resilience._adaptive.limits import AimdLimit, Gradient2Limit, VegasLimit, WindowedLimit
from resilience._bulkhead import Bulkhead
from resilience._circuit.breaker import CircuitBreaker
from resilience._circuit.metrics import CircuitMetrics
from resilience._circuit.state import CircuitState
from resilience._clock import Clock, SystemClock
from resilience._concurrency import AdaptiveConcurrency
from resilience._context import remaining
from resilience._errors import (
    BulkheadFullError,
    CircuitOpenError,
    ConcurrencyLimitedError,
    DeadlineExceededError,
    RateLimitedError,
    RejectedError,
    ResilienceError,
    ThrottledError,
)
from resilience._events import (
    BulkheadRejected,
    CallRejected,
    CircuitStateChanged,
    ConcurrencyLimited,
    DeadlineExceeded,
    Event,
    FallbackUsed,
    HedgeSent,
    IdempotencyClaimLost,
    IdempotencyConflict,
    IdempotencyMismatch,
    IdempotentReplayed,
    RateLimited,
    RetryBudgetExhausted,
    RetryGaveUp,
    RetryScheduled,
    StoreRecovered,
    StoreUnavailable,
    Throttled,
    subscribe,
)
from resilience._fallback import Fallback
from resilience._gcra import RateLimitDecision
from resilience._hedge import Hedge
from resilience._pipeline import Pipeline
from resilience._policy import Policy
from resilience._public import publish as _publish
from resilience._ratelimit import RateLimiter, RateLimiterCounts
from resilience._retry.backoff import Backoff
from resilience._retry.budget import RetryBudget
from resilience._retry.retry import Retry
from resilience._throttle import AdaptiveThrottle
from resilience._timeout import Deadline, Timeout

__version__ = "0.1.0.dev0"

__all__ = [
    "AdaptiveConcurrency",
    "AdaptiveThrottle",
    "AimdLimit",
    "Backoff",
    "Bulkhead",
    "BulkheadFullError",
    "BulkheadRejected",
    "CallRejected",
    "CircuitBreaker",
    "CircuitMetrics",
    "CircuitOpenError",
    "CircuitState",
    "CircuitStateChanged",
    "Clock",
    "ConcurrencyLimited",
    "ConcurrencyLimitedError",
    "Deadline",
    "DeadlineExceeded",
    "DeadlineExceededError",
    "Event",
    "Fallback",
    "FallbackUsed",
    "Gradient2Limit",
    "Hedge",
    "HedgeSent",
    "IdempotencyClaimLost",
    "IdempotencyConflict",
    "IdempotencyMismatch",
    "IdempotentReplayed",
    "Pipeline",
    "Policy",
    "RateLimitDecision",
    "RateLimited",
    "RateLimitedError",
    "RateLimiter",
    "RateLimiterCounts",
    "RejectedError",
    "ResilienceError",
    "Retry",
    "RetryBudget",
    "RetryBudgetExhausted",
    "RetryGaveUp",
    "RetryScheduled",
    "StoreRecovered",
    "StoreUnavailable",
    "SystemClock",
    "Throttled",
    "ThrottledError",
    "Timeout",
    "VegasLimit",
    "WindowedLimit",
    "__version__",
    "remaining",
    "subscribe",
]

_publish(__name__, globals(), __all__)
