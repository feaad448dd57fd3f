"""Pure request checks, Kubernetes' own rules for names, labels and annotations.

Every check returns the ``FieldViolation``s it found (naming the request field), so a
use case can collect all of them and raise one INVALID_ARGUMENT: callers fix every
mistake in one round trip instead of one per call.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime

from service.core.errors import FieldViolation, invalid_argument

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
LABEL_VALUE_MAX = 63
QUALIFIED_NAME_MAX = 63
ANNOTATIONS_TOTAL_MAX = 256 * 1024  # Kubernetes' TotalAnnotationSizeLimitB
REQUEST_ID_MAX = 128
GENERATED_SUFFIX_LENGTH = 5
LABEL_SELECTOR_MAX = 4096
PAGE_TOKEN_MAX = 4096

_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL_RE = re.compile(rf"^{_DNS1123_LABEL}$")
_DNS1123_SUBDOMAIN_RE = re.compile(rf"^{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*$")
_QUALIFIED_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_VISIBLE_ASCII_RE = re.compile(r"^[\x21-\x7e]+$")
# RFC 3339 date-time: full date, "T" (or "t"/space is not allowed by the RFC's ABNF
# for date-time), time with optional fraction, and a mandatory offset.
_RFC3339_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)


def raise_if_any(violations: list[FieldViolation], what: str = "the request is invalid") -> None:
    """Raise one INVALID_ARGUMENT carrying every violation, or do nothing."""
    if violations:
        fields = ", ".join(v.field for v in violations)
        raise invalid_argument(f"{what}: {fields}", violations)


def dns1123_subdomain(field: str, value: str, *, required: bool = True) -> list[FieldViolation]:
    if not value:
        return [FieldViolation(field, "must not be empty")] if required else []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        return [FieldViolation(field, f"must be no more than {DNS1123_SUBDOMAIN_MAX} characters")]
    if not _DNS1123_SUBDOMAIN_RE.match(value):
        return [FieldViolation(field, "must be a lowercase RFC 1123 subdomain: lowercase alphanumerics, '-' "
                                      "or '.', starting and ending with an alphanumeric character")]
    return []


def dns1123_label(field: str, value: str, *, required: bool = True) -> list[FieldViolation]:
    if not value:
        return [FieldViolation(field, "must not be empty")] if required else []
    if len(value) > DNS1123_LABEL_MAX:
        return [FieldViolation(field, f"must be no more than {DNS1123_LABEL_MAX} characters")]
    if not _DNS1123_LABEL_RE.match(value):
        return [FieldViolation(field, "must be a lowercase RFC 1123 label: lowercase alphanumerics or '-', "
                                      "starting and ending with an alphanumeric character")]
    return []


def namespace(value: str, field: str = "namespace") -> list[FieldViolation]:
    return dns1123_label(field, value)


def generate_name(field: str, prefix: str) -> list[FieldViolation]:
    """A prefix the gateway appends random lowercase alphanumerics to: the result must
    be a valid subdomain, so the prefix must leave room for the suffix."""
    if not prefix:
        return []
    if len(prefix) > DNS1123_SUBDOMAIN_MAX - GENERATED_SUFFIX_LENGTH:
        return [FieldViolation(field, f"must be no more than {DNS1123_SUBDOMAIN_MAX - GENERATED_SUFFIX_LENGTH} "
                                      "characters (room is needed for the generated suffix)")]
    if not _DNS1123_SUBDOMAIN_RE.match(prefix + "a" * GENERATED_SUFFIX_LENGTH):
        return [FieldViolation(field, "must be the start of a lowercase RFC 1123 subdomain (a trailing '-' is "
                                      "allowed)")]
    return []


def qualified_name(field: str, key: str) -> list[FieldViolation]:
    """A label or annotation key: ``[prefix/]name`` with a DNS subdomain prefix."""
    prefix, slash, name = key.rpartition("/")
    if slash and not prefix:
        return [FieldViolation(field, "prefix part must not be empty")]
    found: list[FieldViolation] = []
    if slash:
        found += [FieldViolation(field, f"prefix part {v.description}") for v in dns1123_subdomain(field, prefix)]
    if not name:
        found.append(FieldViolation(field, "name part must not be empty"))
    elif len(name) > QUALIFIED_NAME_MAX:
        found.append(FieldViolation(field, f"name part must be no more than {QUALIFIED_NAME_MAX} characters"))
    elif not _QUALIFIED_NAME_RE.match(name):
        found.append(FieldViolation(field, "name part must consist of alphanumerics, '-', '_' or '.', starting and "
                                           "ending with an alphanumeric character"))
    return found


def label_map(field: str, values: Mapping[str, str], *, reserved: Iterable[str] = ()) -> list[FieldViolation]:
    found: list[FieldViolation] = []
    reserved_keys = set(reserved)
    for key, value in values.items():
        where = f"{field}[{key!r}]"
        if not isinstance(key, str):
            found.append(FieldViolation(where, "key must be a string"))
            continue
        found += qualified_name(where, key)
        if key in reserved_keys:
            found.append(FieldViolation(where, "is reserved for the gateway"))
        if not isinstance(value, str):
            found.append(FieldViolation(where, "value must be a string"))
        elif len(value) > LABEL_VALUE_MAX:
            found.append(FieldViolation(where, f"value must be no more than {LABEL_VALUE_MAX} characters"))
        elif not _LABEL_VALUE_RE.match(value):
            found.append(FieldViolation(where, "value must be empty or consist of alphanumerics, '-', '_' or '.', "
                                               "starting and ending with an alphanumeric character"))
    return found


def annotation_map(field: str, values: Mapping[str, str], *, reserved: Iterable[str] = ()) -> list[FieldViolation]:
    found: list[FieldViolation] = []
    reserved_keys = set(reserved)
    total = 0
    for key, value in values.items():
        where = f"{field}[{key!r}]"
        if not isinstance(key, str):
            found.append(FieldViolation(where, "key must be a string"))
            continue
        found += qualified_name(where, key)
        if key in reserved_keys:
            found.append(FieldViolation(where, "is reserved for the gateway"))
        if not isinstance(value, str):
            found.append(FieldViolation(where, "value must be a string"))
            continue
        total += len(key.encode()) + len(value.encode())
    if total > ANNOTATIONS_TOTAL_MAX:
        found.append(FieldViolation(field, f"total size must be no more than {ANNOTATIONS_TOTAL_MAX} bytes"))
    return found


def page_size(value: int, field: str = "page_size") -> list[FieldViolation]:
    """0 means the server default; larger than the maximum is capped (AIP-158), not refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        return [FieldViolation(field, "must be an integer")]
    if value < 0:
        return [FieldViolation(field, "must not be negative")]
    return []


def effective_page_size(value: int, default: int, maximum: int) -> int:
    return default if value == 0 else min(value, maximum)


def page_token(value: str, field: str = "page_token") -> list[FieldViolation]:
    if len(value) > PAGE_TOKEN_MAX:
        return [FieldViolation(field, f"must be no more than {PAGE_TOKEN_MAX} characters")]
    return []


def request_id(value: str, field: str = "request_id") -> list[FieldViolation]:
    if not value:
        return []
    if len(value) > REQUEST_ID_MAX:
        return [FieldViolation(field, f"must be no more than {REQUEST_ID_MAX} characters")]
    if not _VISIBLE_ASCII_RE.match(value):
        return [FieldViolation(field, "must consist of printable ASCII characters without spaces")]
    return []


def operation_id(value: str, field: str = "operation_id") -> list[FieldViolation]:
    try:
        uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return [FieldViolation(field, "must be an operation id (a UUID)")]
    return []


def parse_rfc3339(field: str, value: str) -> tuple[datetime | None, list[FieldViolation]]:
    """An RFC 3339 timestamp with an explicit offset; empty means 'not given'."""
    if not value:
        return None, []
    if len(value) > 64 or not _RFC3339_RE.match(value):
        return None, [FieldViolation(field, "must be an RFC 3339 timestamp such as 2026-01-02T03:04:05Z")]
    normalized = value.replace("z", "Z").replace("t", "T")
    # fromisoformat keeps at most microseconds; trim nanoseconds.
    match = re.match(r"^(.*\.\d{6})\d*(.*)$", normalized)
    if match:
        normalized = match.group(1) + match.group(2)
    try:
        return datetime.fromisoformat(normalized.replace("Z", "+00:00")), []
    except ValueError:
        return None, [FieldViolation(field, "is not a valid date or time")]


# ---------------------------------------------------------------- label selectors

_SELECTOR_SET_OPS = re.compile(r"^\s*(?P<key>\S+)\s+(?P<op>in|notin)\s+\((?P<values>[^()]*)\)\s*$")
_SELECTOR_BINARY = re.compile(r"^\s*(?P<key>[^\s=!<>]+)\s*(?P<op>==|=|!=|<|>)\s*(?P<value>[^\s=!<>]*)\s*$")
_SELECTOR_EXISTS = re.compile(r"^\s*(?P<neg>!?)\s*(?P<key>[^\s=!<>(),]+)\s*$")


def _split_requirements(selector: str) -> list[str] | None:
    """Split on commas outside parentheses; None when the parentheses do not balance."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                return None
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth != 0:
        return None
    parts.append("".join(current))
    return parts


def label_selector(value: str, field: str = "label_selector") -> list[FieldViolation]:
    """Kubernetes' label selector grammar (equality- and set-based requirements)."""
    if not value:
        return []
    if len(value) > LABEL_SELECTOR_MAX:
        return [FieldViolation(field, f"must be no more than {LABEL_SELECTOR_MAX} characters")]
    requirements = _split_requirements(value)
    if requirements is None:
        return [FieldViolation(field, "has unbalanced parentheses")]
    found: list[FieldViolation] = []
    for requirement in requirements:
        found += _requirement(field, requirement)
    return found


def _requirement(field: str, text: str) -> list[FieldViolation]:
    if match := _SELECTOR_SET_OPS.match(text):
        values = [v.strip() for v in match.group("values").split(",")]
        return _selector_key(field, match.group("key")) + [
            v for value in values for v in _selector_value(field, value)
        ]
    if match := _SELECTOR_BINARY.match(text):
        key, op, val = match.group("key"), match.group("op"), match.group("value")
        if op in ("<", ">"):
            if not re.fullmatch(r"-?\d+", val):
                return [FieldViolation(field, f"{op!r} needs an integer value in {text.strip()!r}")]
            return _selector_key(field, key)
        return _selector_key(field, key) + _selector_value(field, val)
    if match := _SELECTOR_EXISTS.match(text):
        return _selector_key(field, match.group("key"))
    return [FieldViolation(field, f"cannot parse requirement {text.strip()!r}")]


def _selector_key(field: str, key: str) -> list[FieldViolation]:
    return [FieldViolation(field, f"key {key!r}: {v.description}") for v in qualified_name(field, key)]


def _selector_value(field: str, value: str) -> list[FieldViolation]:
    if len(value) > LABEL_VALUE_MAX or not _LABEL_VALUE_RE.match(value):
        return [FieldViolation(field, f"value {value!r} is not a valid label value")]
    return []

