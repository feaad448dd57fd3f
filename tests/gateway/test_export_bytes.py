"""Property-based tests of the export's pure parts: hole splitting reassembles every byte,
a range is always served inside the volume or refused as OUT_OF_RANGE, and no request
(REST headers, a proto message, a core request) makes the checks fail other than with
INVALID_ARGUMENT."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.api.grpc import convert
from service.api.grpc_gen.dvp.snapshots.v1 import export_service_pb2
from service.api.rest.handlers.export import parse_range
from service.core.capabilities.exports import check
from service.core.domain import ExportData, ExportHole
from service.core.errors import ApiError, Code
from service.core.export_bytes import content_etag, resolve_span, split_holes
from service.core.requests import ExportRequest

BLOCKS = st.sampled_from([16, 64, 4096])
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@st.composite
def volumes(draw: st.DrawFn) -> bytes:
    """Pieces of data and zero runs, like a sparse disk."""
    parts = draw(st.lists(st.one_of(st.binary(min_size=1, max_size=200),
                                    st.integers(min_value=1, max_value=600).map(bytes)), max_size=12))
    return b"".join(parts)


@given(data=volumes(), offset=st.integers(min_value=0, max_value=10**12), block=BLOCKS)
def test_split_holes_reassembles_every_byte_in_order(data: bytes, offset: int, block: int) -> None:
    position, rebuilt = offset, bytearray()
    for item in split_holes(data, offset, block):
        assert item.offset == position
        if isinstance(item, ExportHole):
            assert item.length > 0
            rebuilt += bytes(item.length)
            position += item.length
        else:
            assert isinstance(item, ExportData) and item.data
            rebuilt += item.data
            position += len(item.data)
    assert bytes(rebuilt) == data


@given(data=volumes(), offset=st.integers(min_value=0, max_value=10**6), block=BLOCKS)
def test_every_aligned_zero_block_is_a_hole(data: bytes, offset: int, block: int) -> None:
    sent_as_data = sum(len(i.data) for i in split_holes(data, offset, block) if isinstance(i, ExportData))
    # Only blocks holding a non-zero byte travel as data.
    start = offset - offset % block
    dirty = 0
    for block_start in range(start, offset + len(data), block):
        lo, hi = max(block_start, offset), min(block_start + block, offset + len(data))
        if any(data[lo - offset:hi - offset]):
            dirty += hi - lo
    assert sent_as_data == dirty


@given(offset=INT64, length=st.one_of(st.none(), INT64), suffix=st.one_of(st.none(), INT64),
       size=st.integers(min_value=0, max_value=2**50), if_etag=st.sampled_from(["", '"a"', '"b"']))
def test_a_checked_range_is_served_inside_the_volume_or_out_of_range(offset: int, length: int | None,
                                                                    suffix: int | None, size: int,
                                                                    if_etag: str) -> None:
    req = ExportRequest(namespace="demo", name="d", offset=offset, length=length, suffix_length=suffix,
                        if_etag=if_etag)
    try:
        check(req)
    except ApiError as exc:
        assert exc.code is Code.INVALID_ARGUMENT
        return
    try:
        span = resolve_span(req, size, '"a"')
    except ApiError as exc:
        assert exc.code is Code.OUT_OF_RANGE and exc.metadata["size"] == str(size)
        return
    assert 0 <= span.offset <= span.end <= size
    if not span.ranged:
        assert (span.offset, span.length) == (0, size)


@given(header=st.one_of(st.none(), st.text(max_size=60), st.from_regex(r"bytes=\d{0,25}-\d{0,25}", fullmatch=True)))
def test_any_range_header_parses_or_is_ignored(header: str | None) -> None:
    parsed = parse_range(header)
    if parsed is not None:
        offset, length, suffix = parsed
        assert offset >= 0 and (length is None or length > 0) and (suffix is None or suffix > 0)
        check(ExportRequest(namespace="demo", name="d", offset=offset, length=length, suffix_length=suffix))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(namespace=st.text(max_size=80), name=st.text(max_size=300), seconds=INT64,
       nanos=st.integers(min_value=-999_999_999, max_value=999_999_999), offset=INT64,
       length=st.one_of(st.none(), INT64), etag=st.text(max_size=400), expand=st.booleans())
def test_any_export_message_is_accepted_or_invalid_argument(namespace: str, name: str, seconds: int, nanos: int,
                                                            offset: int, length: int | None, etag: str,
                                                            expand: bool) -> None:
    message = export_service_pb2.ExportDiskRequest(namespace=namespace, name=name, expand_holes=expand, if_etag=etag)
    message.ttl.seconds, message.ttl.nanos = seconds, nanos
    message.range.offset = offset
    if length is not None:
        message.range.length = length
    try:
        check(convert.export_request(message))
    except ApiError as exc:
        assert exc.code is Code.INVALID_ARGUMENT and exc.field_violations


@pytest.mark.parametrize(("kind", "version"), [("VirtualDiskSnapshot", ""), ("VirtualDisk", "42")])
def test_entity_tags_are_strong_and_distinct(kind: str, version: str) -> None:
    tag = content_etag(kind, "uid-1", version)
    assert tag.startswith('"') and tag.endswith('"') and not tag.startswith('W/')
    assert tag != content_etag(kind, "uid-2", version) != content_etag(kind, "uid-1", version + "1")
