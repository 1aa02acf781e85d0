"""Circuit breaker: outcome windows, the state machine, and the breaker that wires them."""
