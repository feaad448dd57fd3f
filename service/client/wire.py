"""Pure parsing of the HTTP headers a disk export uses (RFC 9110 ranges, RFC 9530 digests)."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_UNSATISFIED_RANGE = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.IGNORECASE)
_DIGEST_MEMBER = re.compile(r"^\s*([a-z0-9_.*-]+)\s*=\s*:([A-Za-z0-9+/=]*):\s*(?:;.*)?$", re.IGNORECASE)
_DURATION = re.compile(r"^\d+(\.\d{1,9})?s$")


@dataclass(frozen=True)
class ContentRange:
    first: int            # first byte position (inclusive)
    last: int             # last byte position (inclusive)
    size: int | None      # complete length; None for "*"

    @property
    def length(self) -> int:
        return self.last - self.first + 1


def range_header(offset: int) -> str:
    """``Range`` for everything from ``offset`` on (the resume request)."""
    return f"bytes={offset}-"


def parse_content_range(value: str | None) -> ContentRange | None:
    """``bytes a-b/size`` of a 206; None when absent or malformed."""
    if not value:
        return None
    match = _CONTENT_RANGE.match(value)
    if match is None:
        return None
    first, last = int(match.group(1)), int(match.group(2))
    size = None if match.group(3) == "*" else int(match.group(3))
    if last < first or (size is not None and last >= size):
        return None
    return ContentRange(first, last, size)


def parse_unsatisfied_range(value: str | None) -> int | None:
    """The complete length from a 416's ``Content-Range: bytes */size``; None otherwise."""
    match = _UNSATISFIED_RANGE.match(value or "")
    return int(match.group(1)) if match else None


def parse_repr_digest(value: str | None, algorithm: str = "sha-256") -> str | None:
    """Hex digest of ``algorithm`` from a ``Repr-Digest`` field (a structured-field
    dictionary of byte sequences, e.g. ``sha-256=:base64:``); None when absent or malformed."""
    if not value:
        return None
    for member in value.split(","):
        match = _DIGEST_MEMBER.match(member)
        if match is None or match.group(1).lower() != algorithm:
            continue
        try:
            raw = base64.b64decode(match.group(2), validate=True)
        except (binascii.Error, ValueError):
            return None
        return raw.hex() if len(raw) == 32 else None
    return None


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (delay-seconds or an HTTP-date); None if absent or bad."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def is_strong_etag(etag: str | None) -> bool:
    """If-Range needs a strong validator: ``"..."``, not ``W/"..."``."""
    return bool(etag) and etag is not None and etag.startswith('"') and etag.endswith('"') and len(etag) >= 2


def is_duration(text: str) -> bool:
    """A protobuf JSON duration as the ``ttl`` query takes it (``120s``, ``1.5s``)."""
    return bool(_DURATION.match(text))
