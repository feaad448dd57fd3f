"""Pure request validation: Kubernetes' name/label rules, all violations at once."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service.cluster.kinds import LABEL_OPERATION_ID
from service.core import request_checks
from service.core import validation as v
from service.core.errors import ApiError, Code
from service.core.idempotency import request_hash
from service.core.requests import CreateDiskSnapshotRequest, ListAuditEventsRequest, ListRequest


def fields(exc: ApiError) -> list[str]:
    return [f.field for f in exc.field_violations]


@pytest.mark.parametrize("name", ["a", "linux-vm-root", "a.b-c.d", "0abc", "x" * 253])
def test_valid_subdomains(name: str) -> None:
    assert v.dns1123_subdomain("name", name) == []


@pytest.mark.parametrize("name", ["", "A", "-a", "a-", "a..b", "a_b", "a b", "x" * 254, "ä", "a/b", ".a"])
def test_invalid_subdomains(name: str) -> None:
    assert [f.field for f in v.dns1123_subdomain("name", name)] == ["name"]


def test_namespace_is_a_label_not_a_subdomain() -> None:
    assert v.namespace("demo") == []
    assert v.namespace("a.b") != []
    assert v.namespace("x" * 64) != []
    assert v.namespace("x" * 63) == []


@pytest.mark.parametrize(("prefix", "ok"), [("disk-", True), ("disk", True), ("Disk-", False), ("-", False),
                                            ("a" * 248, True), ("a" * 249, False), ("a.-", False)])
def test_generate_name_prefix(prefix: str, ok: bool) -> None:
    assert (v.generate_name("generate_name", prefix) == []) is ok


@pytest.mark.parametrize(("key", "ok"), [("app", True), ("example.com/app", True), ("a/b/c", False), ("/x", False),
                                         ("example.com/", False), ("Ex.com/app", False), ("x" * 63, True),
                                         ("x" * 64, False), ("_x", False), ("a_b.c-d", True)])
def test_label_keys(key: str, ok: bool) -> None:
    assert (v.label_map("labels", {key: "v"}) == []) is ok


@pytest.mark.parametrize(("value", "ok"), [("", True), ("v1.2_3-x", True), ("-v", False), ("v" * 64, False),
                                           ("a b", False)])
def test_label_values(value: str, ok: bool) -> None:
    assert (v.label_map("labels", {"k": value}) == []) is ok


def test_label_violation_names_the_key() -> None:
    found = v.label_map("labels", {"bad key": "ok"})
    assert found[0].field == "labels['bad key']"


def test_annotations_total_size_limit() -> None:
    assert v.annotation_map("annotations", {"note": "x" * 1000}) == []
    found = v.annotation_map("annotations", {"note": "x" * (256 * 1024)})
    assert [f.field for f in found] == ["annotations"]


def test_reserved_labels_are_refused() -> None:
    found = v.label_map("labels", {LABEL_OPERATION_ID: "forged"}, reserved=[LABEL_OPERATION_ID])
    assert "reserved" in found[0].description


@pytest.mark.parametrize(("value", "ok"), [("", True), ("abc-123_X.~", True), ("a" * 128, True),
                                           ("a" * 129, False), ("has space", False), ("tab\t", False),
                                           ("ключ", False)])
def test_request_id(value: str, ok: bool) -> None:
    assert (v.request_id(value) == []) is ok


@pytest.mark.parametrize("selector", ["", "app", "!app", "app=x", "app==x", "app!=x", "app in (a, b)",
                                      "app notin (a)", "tier=db,env in (prod,dev),!legacy", "a.b/c=d",
                                      "size>3", "app="])
def test_valid_label_selectors(selector: str) -> None:
    assert v.label_selector(selector) == []


@pytest.mark.parametrize("selector", ["app in (a", "app)", "=x", "app=x=y", "bad key=x", "app in (a b)",
                                      "size>x", "app=-x", "a,,b"])
def test_invalid_label_selectors(selector: str) -> None:
    assert v.label_selector(selector) != []


def test_rfc3339() -> None:
    parsed, bad = v.parse_rfc3339("since", "2026-01-02T03:04:05.123456789Z")
    assert bad == [] and parsed == datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    parsed, bad = v.parse_rfc3339("since", "2026-01-02T03:04:05+02:00")
    assert bad == [] and parsed is not None and parsed.utcoffset() is not None
    for text in ("2026-01-02", "2026-01-02T03:04:05", "yesterday", "2026-13-02T03:04:05Z"):
        assert [f.field for f in v.parse_rfc3339("since", text)[1]] == ["since"], text


def test_page_size() -> None:
    assert v.page_size(0) == [] and v.page_size(10_000) == []
    assert v.page_size(-1) != []
    assert v.effective_page_size(0, 50, 500) == 50
    assert v.effective_page_size(10_000, 50, 500) == 500


def test_create_request_collects_every_violation() -> None:
    req = CreateDiskSnapshotRequest(namespace="Bad_NS", virtual_disk_name="", name="UPPER", generate_name="x-",
                                    labels={"ok": "bad value!"}, request_id="with space")
    with pytest.raises(ApiError) as caught:
        request_checks.create_disk_snapshot(req)
    assert caught.value.code is Code.INVALID_ARGUMENT
    assert fields(caught.value) == ["namespace", "virtual_disk_name", "name", "generate_name", "labels['ok']",
                                    "request_id"]


def test_valid_create_request_passes() -> None:
    request_checks.create_disk_snapshot(CreateDiskSnapshotRequest(
        namespace="demo", virtual_disk_name="linux-vm-root", labels={"team": "a"}, request_id="r-1"))


def test_audit_filter_rejects_inverted_range() -> None:
    with pytest.raises(ApiError) as caught:
        request_checks.audit_filter(ListAuditEventsRequest(since="2026-01-02T00:00:00Z",
                                                           until="2026-01-01T00:00:00Z", page_size=-5))
    assert fields(caught.value) == ["page_size", "until"]
    flt = request_checks.audit_filter(ListAuditEventsRequest(actor="alice", since="2026-01-01T00:00:00Z"))
    assert flt.actor == "alice" and flt.since == datetime(2026, 1, 1, tzinfo=UTC) and flt.until is None


def test_list_request_checks_selector_and_namespace() -> None:
    with pytest.raises(ApiError) as caught:
        request_checks.list_request(ListRequest(namespace="", label_selector="a in (", page_size=-1))
    assert fields(caught.value) == ["namespace", "page_size", "label_selector"]


def test_request_hash_ignores_request_id_only() -> None:
    base = CreateDiskSnapshotRequest(namespace="demo", virtual_disk_name="d", request_id="one")
    assert request_hash(base) == request_hash(CreateDiskSnapshotRequest(namespace="demo", virtual_disk_name="d",
                                                                        request_id="two"))
    assert request_hash(base) != request_hash(CreateDiskSnapshotRequest(namespace="demo", virtual_disk_name="d",
                                                                        required_consistency=False))
    # Label order does not matter: the JSON is canonical.
    a = CreateDiskSnapshotRequest(namespace="demo", virtual_disk_name="d", labels={"a": "1", "b": "2"})
    b = CreateDiskSnapshotRequest(namespace="demo", virtual_disk_name="d", labels={"b": "2", "a": "1"})
    assert request_hash(a) == request_hash(b)


