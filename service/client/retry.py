"""When a failed call is tried again: only UNAVAILABLE and RESOURCE_EXHAUSTED, with backoff.

Every other code is an answer that the same request will get again (a bad parameter, a
missing resource, a refusal by policy). The two retried codes mean "not now": the service
(or the network) is busy or down for a moment. A ``google.rpc.RetryInfo`` from the service
says how long to wait and is honoured as given (up to ``max_retry_delay``); otherwise the
wait grows exponentially from ``initial_backoff`` with jitter, so many clients that failed
together do not come back together (the gRPC retry design, A6).
"""

from __future__ import annotations

import dataclasses
import random

import grpc

from service.client.errors import CallError

__all__ = ["NO_RETRY", "RetryPolicy"]

_RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How many attempts, and how long to wait between them."""

    #: Attempts in all, the first included; 1 means never retry.
    max_attempts: int = 5
    #: Wait before the second attempt when the service sent no RetryInfo, seconds.
    initial_backoff: float = 0.2
    #: Growth of the wait per attempt.
    multiplier: float = 2.0
    #: Longest computed wait, seconds.
    max_backoff: float = 5.0
    #: Longest wait a RetryInfo may ask for, seconds (a longer one is not retried).
    max_retry_delay: float = 60.0
    #: Each computed wait is scaled by a random factor in [1 - jitter, 1 + jitter].
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("backoffs must be >= 0 and the multiplier >= 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")

    def delay(self, attempt: int, error: CallError) -> float | None:
        """Seconds to wait before attempt ``attempt + 1`` after ``error``; None: do not retry."""
        if error.code not in _RETRYABLE or attempt >= self.max_attempts:
            return None
        if error.retry_delay is not None:
            return error.retry_delay if error.retry_delay <= self.max_retry_delay else None
        backoff = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
        return backoff * random.uniform(1 - self.jitter, 1 + self.jitter)


#: Try once only.
NO_RETRY = RetryPolicy(max_attempts=1)
