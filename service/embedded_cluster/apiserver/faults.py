"""Fault injection for tests: latency, failures, dropped and expired watches, DataExport faults."""

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

    def applies(self, verb: str, resource: str, key: str = "") -> bool:
        # ``resource`` is the bare plural ("dataexports"); the store's key ("dataexports.deckhouse.io",
        # what controllers.resources names) matches too.
        return self.verb in (None, verb) and self.resource in (None, resource, key or resource)


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
        self._exports_to_expire = 0
        self._export_drop: int | None = None
        self._export_rate: float | None = None

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

    def expire_next_exports(self, n: int) -> None:
        """The next ``n`` DataExports created are reported Ready=False/Expired at once, as if their
        TTL ran out before they became ready; later ones behave normally."""
        self._exports_to_expire = max(0, int(n))

    def drop_next_export(self, after_bytes: int) -> None:
        """The next block download (a GET with a body) is cut off after ``after_bytes`` bytes of
        body: the connection closes short of Content-Length. A shorter body is served whole."""
        self._export_drop = max(0, int(after_bytes))

    def slow_export(self, bytes_per_second: float | None) -> None:
        """Hold block downloads, running ones included, to this rate; None lifts the limit."""
        if bytes_per_second is not None and not bytes_per_second > 0:
            raise ValueError("bytes_per_second must be positive (None: full speed)")
        self._export_rate = None if bytes_per_second is None else float(bytes_per_second)

    def clear(self) -> None:
        self._latencies.clear()
        self._failures.clear()
        self._exports_to_expire = 0
        self._export_drop = None
        self._export_rate = None

    # contracts.ExportFaults: what the DataExport controller and the exporter consume.
    def take_export_expiry(self) -> bool:
        if self._exports_to_expire <= 0:
            return False
        self._exports_to_expire -= 1
        return True

    def take_export_drop(self) -> int | None:
        drop, self._export_drop = self._export_drop, None
        return drop

    def export_rate(self) -> float | None:
        return self._export_rate

    def register_watch(self, close: WatchCloser) -> Callable[[], None]:
        self._watches.add(close)
        return lambda: self._watches.discard(close)

    async def before(self, verb: str, resource: str, key: str = "") -> None:
        """Called before every resource request (plural, and plural.group key): sleeps and/or raises
        the injected failure."""
        delay = sum(rule.seconds for rule in self._latencies if rule.applies(verb, resource, key))
        if delay:
            await asyncio.sleep(delay)
        for rule in self._failures:
            if rule.applies(verb, resource, key) and self._random.random() < rule.rate:
                raise StatusError(rule.code, _REASONS.get(rule.code, "InternalError"),
                                  f"injected fault: {verb} {resource} failed with {rule.code}")
