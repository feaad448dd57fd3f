"""Opaque keyset page tokens.

A token is base64url(JSON) carrying the last row's sort key, a fingerprint of the
filter it was issued for, and a checksum. Not a secret (a client could forge one), but
a truncated, edited or reused-with-another-filter token is rejected instead of silently
paging through the wrong rows.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from service.core.errors import ApiError, FieldViolation, invalid_argument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
MAX_TOKEN_LENGTH = 1024

_TOKEN_FIELD = "page_token"


def page_limit(page_size: int) -> int:
    """0 means the server default; larger sizes are capped, negative ones rejected."""
    if page_size < 0:
        raise invalid_argument("invalid page_size", [FieldViolation("page_size", "must not be negative")])
    if page_size == 0:
        return DEFAULT_PAGE_SIZE
    return min(page_size, MAX_PAGE_SIZE)


def fingerprint(kind: str, filter_fields: dict[str, Any]) -> str:
    canonical = json.dumps([kind, filter_fields], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _checksum(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def encode(position: dict[str, Any], filter_fingerprint: str) -> str:
    body = {"p": position, "f": filter_fingerprint}
    raw = json.dumps({**body, "c": _checksum(body)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _bad(description: str) -> ApiError:
    return invalid_argument("invalid page_token", [FieldViolation(_TOKEN_FIELD, description)])


def decode(token: str, filter_fingerprint: str) -> dict[str, Any]:
    """The position inside ``token``; ApiError INVALID_ARGUMENT for anything suspicious."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise _bad("too long")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        doc = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise _bad("not a token issued by this server") from None
    if not isinstance(doc, dict) or set(doc) != {"p", "f", "c"} or not isinstance(doc["p"], dict):
        raise _bad("not a token issued by this server")
    body = {"p": doc["p"], "f": doc["f"]}
    if doc["c"] != _checksum(body):
        raise _bad("the token was altered")
    if doc["f"] != filter_fingerprint:
        raise _bad("the token was issued for a different filter")
    position: dict[str, Any] = doc["p"]
    return position


def bad_position() -> ApiError:
    return _bad("not a token issued by this server")
