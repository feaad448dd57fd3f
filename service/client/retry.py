"""When and how long to wait before a call to the gateway is tried again.

Retried: UNAVAILABLE (the gateway, its database or the cluster is down for a moment) and
RESOURCE_EXHAUSTED when the gateway says when to come back (RetryInfo: a full stream
slot table). The gateway's RetryInfo delay is waited as given (its "Retry-After hint");
without one the wait is exponential backoff with full jitter, capped. A call gives up
after ``max_attempts`` attempts or when the next attempt would start after ``deadline``
seconds from the first. Retrying a mutation is safe because the client sends the same
idempotency key (``request_id``) on every attempt.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from service.client.errors import GatewayError


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5              # attempts per call, the first included (1: never retry)
    initial_backoff: float = 0.2       # seconds; the cap of the first jittered wait
    max_backoff: float = 10.0          # seconds; no jittered wait is longer
    multiplier: float = 2.0
    max_retry_after: float = 60.0      # a server hint longer than this ends the call instead
    deadline: float | None = 120.0     # seconds from the first attempt after which none starts

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("backoffs must be non-negative and the multiplier at least 1")
        if self.deadline is not None and self.deadline <= 0:
            raise ValueError("deadline must be positive (None: no deadline)")

    @classmethod
    def never(cls) -> RetryPolicy:
        return cls(max_attempts=1)

    @staticmethod
    def retryable(error: GatewayError) -> bool:
        if error.code == grpc.StatusCode.UNAVAILABLE:
            return True
        return error.code == grpc.StatusCode.RESOURCE_EXHAUSTED and error.retry_after is not None

    def backoff(self, retry: int, rng: Callable[[], float] = random.random) -> float:
        """The jittered wait before retry number ``retry`` (from 1) when the server gave no hint."""
        ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier ** (retry - 1))
        return rng() * ceiling


class Attempts:
    """The retry state of one call: ``delay_after(error)`` answers how long to wait before
    the next attempt, or None when the call must give up with ``error``."""

    def __init__(self, policy: RetryPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._started = clock()
        self.made = 0

    def start(self) -> None:
        """Count an attempt about to be made."""
        self.made += 1

    def remaining(self) -> float | None:
        """Seconds left before the deadline (None: no deadline)."""
        if self.policy.deadline is None:
            return None
        return max(0.0, self.policy.deadline - (self._clock() - self._started))

    def timeout(self, per_call: float | None) -> float | None:
        """The timeout of the next attempt: the per-call timeout, never past the deadline."""
        left = self.remaining()
        if left is None:
            return per_call
        return left if per_call is None else min(per_call, left)

    def delay_after(self, error: GatewayError) -> float | None:
        if not self.policy.retryable(error) or self.made >= self.policy.max_attempts:
            return None
        if error.retry_after is not None:
            if error.retry_after > self.policy.max_retry_after:
                return None
            delay = error.retry_after
        else:
            delay = self.policy.backoff(self.made)
        left = self.remaining()
        if left is not None and delay >= left:
            return None   # the next attempt would start past the deadline
        return delay
