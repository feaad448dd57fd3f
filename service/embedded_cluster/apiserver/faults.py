"""Fault injection for tests: latency, failures, dropped and expired watches."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass

from service.embedded_cluster.contracts import StatusError

_REASONS = {400: "BadRequest", 404: "NotFound", 409: "Conflict", 410: "Expired", 429: "TooManyRequests",
            500: "InternalError", 502: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}
# How an open watch is told to end: "dropped" (connection closed) or "expired" (a 410 ERROR event first).
WatchCloser = Callable[[str], None]


@dataclass(frozen=True)
class _Rule:
    verb: str | None
    resource: str | None

    def applies(self, verb: str, resource: str) -> bool:
        return self.verb in (None, verb) and self.resource in (None, resource)


@dataclass(frozen=True)
class _Latency(_Rule):
    seconds: float


@dataclass(frozen=True)
class _Failure(_Rule):
    rate: float
    code: int


class FaultInjector:
    def __init__(self, *, seed: int = 0, compact: Callable[[], None] | None = None) -> None:
        self._random = random.Random(seed)
        self._latencies: list[_Latency] = []
        self._failures: list[_Failure] = []
        self._watches: set[WatchCloser] = set()
        self._compact = compact

    def add_latency(self, seconds: float, *, verb: str | None = None, resource: str | None = None) -> None:
        self._latencies.append(_Latency(verb, resource, max(0.0, float(seconds))))

    def fail(self, rate: float, *, code: int = 503, verb: str | None = None, resource: str | None = None) -> None:
        self._failures.append(_Failure(verb, resource, min(1.0, max(0.0, float(rate))), code))

    def drop_watches(self) -> None:
        for close in list(self._watches):
            close("dropped")

    def expire_watches(self) -> None:
        if self._compact is not None:
            self._compact()
        for close in list(self._watches):
            close("expired")

    def clear(self) -> None:
        self._latencies.clear()
        self._failures.clear()

    def register_watch(self, close: WatchCloser) -> Callable[[], None]:
        self._watches.add(close)
        return lambda: self._watches.discard(close)

    async def before(self, verb: str, resource: str) -> None:
        """Called before every resource request: sleeps and/or raises the injected failure."""
        delay = sum(rule.seconds for rule in self._latencies if rule.applies(verb, resource))
        if delay:
            await asyncio.sleep(delay)
        for rule in self._failures:
            if rule.applies(verb, resource) and self._random.random() < rule.rate:
                raise StatusError(rule.code, _REASONS.get(rule.code, "InternalError"),
                                  f"injected fault: {verb} {resource} failed with {rule.code}")
