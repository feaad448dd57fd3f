"""Header parsing of the download client: ranges (RFC 9110), digests (RFC 9530), Retry-After."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

import pytest

from service.client.wire import (
    ContentRange,
    is_duration,
    is_strong_etag,
    parse_content_range,
    parse_repr_digest,
    parse_retry_after,
    parse_unsatisfied_range,
    range_header,
)


def test_range_header_asks_for_everything_from_the_offset() -> None:
    assert range_header(0) == "bytes=0-"
    assert range_header(123456789) == "bytes=123456789-"


@pytest.mark.parametrize(("value", "expected"), [
    ("bytes 0-99/100", ContentRange(0, 99, 100)),
    ("bytes 65536-1073741823/1073741824", ContentRange(65536, 1073741823, 1073741824)),
    ("BYTES 5-9/*", ContentRange(5, 9, None)),
    ("bytes 7-7/8", ContentRange(7, 7, 8)),
])
def test_content_range(value: str, expected: ContentRange) -> None:
    assert parse_content_range(value) == expected


@pytest.mark.parametrize("value", [None, "", "bytes */100", "bytes 10-5/100", "bytes 0-100/100", "items 0-1/2",
                                   "bytes 0-/100", "bytes=0-99/100"])
def test_content_range_rejects_what_is_not_one(value: str | None) -> None:
    assert parse_content_range(value) is None


def test_content_range_length() -> None:
    assert ContentRange(10, 19, 100).length == 10


def test_unsatisfied_range_gives_the_size() -> None:
    assert parse_unsatisfied_range("bytes */1073741824") == 1073741824
    assert parse_unsatisfied_range("bytes 0-1/2") is None
    assert parse_unsatisfied_range(None) is None


def _sf(digest: bytes) -> str:
    return ":" + base64.b64encode(digest).decode() + ":"


def test_repr_digest_sha256() -> None:
    digest = hashlib.sha256(b"image").digest()
    assert parse_repr_digest(f"sha-256={_sf(digest)}") == digest.hex()
    # Among other algorithms, with spaces and parameters (an RFC 8941 dictionary).
    other = _sf(hashlib.sha512(b"image").digest())
    assert parse_repr_digest(f"sha-512={other}, sha-256={_sf(digest)};x=1") == digest.hex()
    assert parse_repr_digest(f"SHA-256={_sf(digest)}") == digest.hex()


@pytest.mark.parametrize("value", [
    None, "", "sha-512=:AAAA:", "sha-256=:not base64!:", "sha-256=" + _sf(b"short"),
    "sha-256=" + base64.b64encode(bytes(32)).decode(),   # a token, not a byte sequence
])
def test_repr_digest_absent_or_malformed(value: str | None) -> None:
    assert parse_repr_digest(value) is None


def test_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Wed, 01 Jan 2025 12:00:05 GMT", now) == 5.0
    assert parse_retry_after("Wed, 01 Jan 2025 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_strong_etags_only() -> None:
    assert is_strong_etag('"abc"')
    assert not is_strong_etag('W/"abc"')
    assert not is_strong_etag("abc")
    assert not is_strong_etag(None)


def test_ttl_is_a_protobuf_json_duration() -> None:
    assert is_duration("120s") and is_duration("1.5s")
    assert not is_duration("2m") and not is_duration("120") and not is_duration("-1s")
