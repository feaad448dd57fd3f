"""Turning hostile HTTP input into typed values: query parameters, headers, JSON bodies.

Only what cannot be converted is rejected here (unknown fields, wrong JSON types, a
non-integer page size); every semantic rule lives in the core.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any, TypeVar

from aiohttp import web
from multidict import MultiMapping

from service.api.rest.problems import payload_too_large, transport_error
from service.core.errors import ApiError, FieldViolation

E = TypeVar("E", bound=StrEnum)

MAX_BODY_BYTES = 1024 * 1024
_INT32_MAX = 2**31 - 1


def bad_request(violations: list[FieldViolation]) -> ApiError:
    return transport_error(400, "INVALID_ARGUMENT", "the request is malformed; see fieldViolations",
                           violations=violations)


class Query:
    """The query string, checked against the parameters an operation declares."""

    def __init__(self, query: MultiMapping[str], allowed: Iterable[str]) -> None:
        allowed_names = set(allowed)
        violations = [FieldViolation(name, "is not a parameter of this call")
                      for name in dict.fromkeys(query) if name not in allowed_names]
        violations += [FieldViolation(name, "must be given at most once")
                       for name in dict.fromkeys(query) if name in allowed_names and len(query.getall(name)) > 1]
        if violations:
            raise bad_request(violations)
        self._query = query

    def text(self, name: str) -> str:
        return self._query.get(name, "")

    def page_size(self, name: str = "pageSize") -> int:
        raw = self._query.get(name, "")
        if raw == "":
            return 0
        if not raw.isascii() or not raw.isdigit() or int(raw) > _INT32_MAX:
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


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise bad_request([FieldViolation(key, "appears more than once")])
        result[key] = value
    return result


def _reject_constant(token: str) -> Any:
    raise bad_request([FieldViolation("body", f"{token} is not valid JSON")])


async def json_object(request: web.Request, *, required: bool = True) -> dict[str, Any]:
    """The body as a JSON object; 415 for another media type, 413 above the size limit.
    With ``required=False`` an absent (empty) body reads as ``{}``."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise payload_too_large()
    if request.can_read_body and request.content_type != "application/json":
        raise transport_error(415, "UNSUPPORTED_MEDIA_TYPE", "the request body must be application/json")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise payload_too_large() from None
    if not raw:
        if not required:
            return {}
        raise bad_request([FieldViolation("body", "a JSON object is required")])
    try:
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=_reject_duplicates,
                           parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise bad_request([FieldViolation("body", f"is not valid UTF-8 JSON: {type(exc).__name__}")]) from None
    if not isinstance(value, dict):
        raise bad_request([FieldViolation("body", "must be a JSON object")])
    return value


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
        self.violations += [FieldViolation(self._field(name), "is not a field of this request")
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
        return value

    def optional_string(self, name: str) -> str | None:
        """None when absent; a present string is kept as sent (even empty)."""
        if name not in self._value:
            return None
        value = self._value[name]
        if not isinstance(value, str):
            self._violation(name, "must be a string")
            return None
        return value

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
        bad = [FieldViolation(self._field(f"{name}[{key!r}]"), "must be a string") for key, item in value.items()
               if not isinstance(item, str)]
        self.violations += bad
        return {key: item for key, item in value.items() if isinstance(item, str)}

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

