"""Turning hostile HTTP input into typed values: query parameters, headers, the fields of
a JSON body (``service.api.rest.body`` reads and decodes it).

Only what cannot be converted is rejected here (unknown fields, wrong JSON types, a
non-integer page size, text with a lone surrogate or a NUL); every semantic rule lives in
the core.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any, TypeVar

from aiohttp import web
from multidict import MultiMapping

from service.api.rest.problems import transport_error
from service.api.rest.text import printable, text_problem
from service.core.errors import ApiError, FieldViolation

E = TypeVar("E", bound=StrEnum)

_INT32_MAX = 2**31 - 1
_INT32_DIGITS = len(str(_INT32_MAX))


def bad_request(violations: list[FieldViolation]) -> ApiError:
    return transport_error(400, "INVALID_ARGUMENT", "the request is malformed; see fieldViolations",
                           violations=violations)


class Query:
    """The query string, checked against the parameters an operation declares."""

    def __init__(self, query: MultiMapping[str], allowed: Iterable[str]) -> None:
        allowed_names = set(allowed)
        violations = [FieldViolation(printable(name), "is not a parameter of this call")
                      for name in dict.fromkeys(query) if name not in allowed_names]
        violations += [FieldViolation(name, "must be given at most once")
                       for name in dict.fromkeys(query) if name in allowed_names and len(query.getall(name)) > 1]
        violations += [FieldViolation(name, problem) for name in dict.fromkeys(query)
                       if name in allowed_names and (problem := text_problem(query[name])) is not None]
        if violations:
            raise bad_request(violations)
        self._query = query

    def text(self, name: str) -> str:
        return self._query.get(name, "")

    def page_size(self, name: str = "pageSize") -> int:
        raw = self._query.get(name, "")
        if raw == "":
            return 0
        # The length first: int() of thousands of digits is slow, or a ValueError.
        if not raw.isascii() or not raw.isdigit() or len(raw) > _INT32_DIGITS or int(raw) > _INT32_MAX:
            raise bad_request([FieldViolation(name, f"must be an integer between 0 and {_INT32_MAX}")])
        return int(raw)

    def enum(self, name: str, kind: type[E]) -> E | None:
        raw = self._query.get(name, "")
        if raw == "":
            return None
        try:
            return kind(raw)
        except ValueError:
            allowed = ", ".join(member.value for member in kind)
            raise bad_request([FieldViolation(name, f"must be one of {allowed}")]) from None


def header_version(request: web.Request, name: str = "Last-Event-ID") -> int:
    """A non-negative integer header (absent: 0)."""
    raw = request.headers.get(name, "").strip()
    if raw == "":
        return 0
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise bad_request([FieldViolation(name, "must be the id of an event of this stream (an integer)")])
    return int(raw)


def _map_entry_problem(key: str, item: Any) -> str | None:
    if not isinstance(item, str):
        return "must be a string"
    key_problem = text_problem(key)
    if key_problem is not None:
        return f"key {key_problem}"
    return text_problem(item)


class Body:
    """Typed reads from a JSON object; collects every violation and rejects unknown fields.

    A nested object (``nested``, ``nested_array``) is read by a ``Body`` of its own that shares
    the violations and names its fields by their path (``nameReplacements[0].from.name``).
    """

    def __init__(self, value: Mapping[str, Any], known: Iterable[str], *, path: str = "",
                 violations: list[FieldViolation] | None = None) -> None:
        self._value = value
        self._path = path
        known_names = set(known)
        self.violations = violations if violations is not None else []
        self.violations += [FieldViolation(self._field(printable(name)), "is not a field of this request")
                            for name in value if name not in known_names]

    def _field(self, name: str) -> str:
        return f"{self._path}.{name}" if self._path else name

    def _violation(self, name: str, description: str) -> None:
        self.violations.append(FieldViolation(self._field(name), description))

    def string(self, name: str, *, required: bool = False) -> str:
        if name not in self._value:
            if required:
                self._violation(name, "is required")
            return ""
        value = self._value[name]
        if not isinstance(value, str):
            self._violation(name, "must be a string")
            return ""
        return value if self._usable(name, value) else ""

    def optional_string(self, name: str) -> str | None:
        """None when absent; a present string is kept as sent (even empty)."""
        if name not in self._value:
            return None
        value = self._value[name]
        if not isinstance(value, str):
            self._violation(name, "must be a string")
            return None
        return value if self._usable(name, value) else None

    def _usable(self, name: str, value: str) -> bool:
        """False (and a violation) for text nothing downstream can encode or store."""
        problem = text_problem(value)
        if problem is not None:
            self._violation(name, problem)
        return problem is None

    def boolean(self, name: str, default: bool) -> bool:
        value = self._value.get(name, default)
        if not isinstance(value, bool):
            self._violation(name, "must be a boolean")
            return default
        return value

    def enum(self, name: str, kind: type[E], default: E) -> E:
        """One of ``kind``'s values (its JSON spelling); absent: ``default``."""
        value = self.optional_enum(name, kind)
        return default if value is None else value

    def optional_enum(self, name: str, kind: type[E]) -> E | None:
        """One of ``kind``'s values (its JSON spelling); absent or invalid: None (an
        invalid one is a violation)."""
        if name not in self._value:
            return None
        value = self._value[name]
        allowed = ", ".join(member.value for member in kind)
        if not isinstance(value, str):
            self._violation(name, f"must be a string, one of {allowed}")
            return None
        try:
            return kind(value)
        except ValueError:
            self._violation(name, f"must be one of {allowed}")
            return None

    def string_map(self, name: str) -> dict[str, str]:
        value = self._value.get(name, {})
        if not isinstance(value, dict):
            self._violation(name, "must be an object of strings")
            return {}
        # A key is shown as repr() shows it: a lone surrogate or NUL in it comes out escaped.
        bad = [FieldViolation(self._field(f"{name}[{key!r}]"), problem) for key, item in value.items()
               if (problem := _map_entry_problem(key, item)) is not None]
        self.violations += bad
        return {key: item for key, item in value.items() if _map_entry_problem(key, item) is None}

    def nested(self, name: str, known: Iterable[str]) -> Body:
        """The nested object ``name``, read by a Body of its own (an empty one when
        absent or not an object; the latter is a violation)."""
        value = self._value.get(name, {})
        if not isinstance(value, dict):
            self._violation(name, "must be an object")
            value = {}
        return Body(value, known, path=self._field(name), violations=self.violations)

    def nested_array(self, name: str, known: Iterable[str]) -> list[Body]:
        """The array of objects ``name`` (absent: empty), one Body per item."""
        value = self._value.get(name, [])
        if not isinstance(value, list):
            self._violation(name, "must be an array of objects")
            return []
        items: list[Body] = []
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                self._violation(f"{name}[{index}]", "must be an object")
                continue
            items.append(Body(item, known, path=self._field(f"{name}[{index}]"), violations=self.violations))
        return items

    def check(self) -> None:
        if self.violations:
            raise bad_request(self.violations)

