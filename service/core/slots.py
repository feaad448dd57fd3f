"""Caps on concurrent long calls (streams, exports), per replica and per caller.

Refusing at once (RESOURCE_EXHAUSTED with a retry hint) rather than queueing keeps a
burst, or one greedy caller, from holding connections and memory the others need."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from service.core.errors import ApiError, Code


class CallerSlots:
    def __init__(self, *, total: int, per_caller: int, what: str, reason: str, retry_after_seconds: int) -> None:
        self._limit_total = total
        self._limit_per_caller = per_caller
        self._what = what
        self._reason = reason
        self._retry_after = retry_after_seconds
        self._by_caller: dict[str, int] = {}
        self._total = 0

    def take(self, subject: str) -> None:
        if self._total >= self._limit_total:
            raise self._exhausted(f"the gateway already serves {self._total} {self._what} "
                                  f"(limit {self._limit_total})")
        mine = self._by_caller.get(subject, 0)
        if mine >= self._limit_per_caller:
            raise self._exhausted(f"{subject!r} already has {mine} {self._what} open "
                                  f"(limit {self._limit_per_caller} per caller)")
        self._by_caller[subject] = mine + 1
        self._total += 1

    def give_back(self, subject: str) -> None:
        self._total -= 1
        left = self._by_caller.get(subject, 1) - 1
        if left:
            self._by_caller[subject] = left
        else:
            self._by_caller.pop(subject, None)

    @contextmanager
    def held(self, subject: str) -> Iterator[None]:
        self.take(subject)
        try:
            yield
        finally:
            self.give_back(subject)

    def _exhausted(self, message: str) -> ApiError:
        return ApiError(Code.RESOURCE_EXHAUSTED, self._reason, message + "; retry later",
                        retry_after_seconds=self._retry_after)
