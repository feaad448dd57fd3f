"""Regular expressions as Kubernetes runs them: RE2 (Go's regexp syntax, linear time).

Python's backtracking ``re`` is not an option for hostile input: the CRDs' own URL
pattern (``(?:[a-zA-Z]|[0-9]|[$-_@.&+]|...)+$``) takes seconds on a 25-character string.
google-re2 comes with cel-python.
"""

from __future__ import annotations

import functools
from typing import Any

import re2  # google-re2 ships no type information (ignored in pyproject mypy overrides)

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False   # a bad pattern is reported by the exception, not on stderr


_REMEMBERED = 4096  # texts per pattern


class RegexError(ValueError):
    """The pattern is not valid RE2 syntax."""


class Regex:
    """One compiled RE2 pattern; like Go's MatchString, matching is unanchored."""

    __slots__ = ("_compiled", "_seen", "source")

    def __init__(self, source: str) -> None:
        try:
            self._compiled: Any = re2.compile(source, _OPTIONS)
        except re2.error as exc:
            raise RegexError(f"invalid regular expression {source!r}: {exc}") from exc
        self.source = source
        # Answers for texts seen before: every write re-admits the whole object, so the same
        # label keys, values and names are matched again and again (google-re2's Python
        # binding costs ~10 us a search; a real apiserver's Go regexp far less).
        self._seen: dict[str, bool] = {}

    def matches(self, text: str) -> bool:
        answer = self._seen.get(text)
        if answer is None:
            answer = self._compiled.search(text) is not None
            if len(self._seen) >= _REMEMBERED:
                self._seen.clear()
            self._seen[text] = answer
        return answer

    def find(self, text: str) -> str | None:
        match = self._compiled.search(text)
        return None if match is None else str(match.group(0))

    def find_all(self, text: str) -> list[str]:
        return [str(match.group(0)) for match in self._compiled.finditer(text)]


@functools.lru_cache(maxsize=512)
def regex(source: str) -> Regex:
    """The compiled pattern, cached (CEL rules may build patterns at run time)."""
    return Regex(source)
