"""api_error_from_status: every Kubernetes failure mapped to the gateway's error model."""

from __future__ import annotations

import json
from typing import Any

import pytest

from service.cluster.errors import api_error_from_status, cluster_unreachable, translate_field_path
from service.cluster.kinds import DATA_EXPORT, VIRTUAL_DISK_SNAPSHOT, VIRTUAL_MACHINE_OPERATION
from service.core.errors import Code, FieldViolation

SECRET_URL = "https://10.0.0.1:6443"
SECRET_TOKEN = "sk-very-secret-token"


def status_body(code: int, reason: str, *, name: str = "", kind: str = "", causes: list[dict[str, str]] | None = None,
                retry_after: int | None = None) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
        details["group"] = "virtualization.deckhouse.io"
        details["kind"] = kind or "virtualdisksnapshots"
    if causes:
        details["causes"] = causes
    if retry_after is not None:
        details["retryAfterSeconds"] = retry_after
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason,
            "message": f"leaky message with {SECRET_URL} and {SECRET_TOKEN}", "details": details}


def assert_no_leak(message: str) -> None:
    assert SECRET_URL not in message
    assert SECRET_TOKEN not in message
    assert "leaky" not in message


def test_404_for_an_object_is_not_found() -> None:
    err = api_error_from_status(404, status_body(404, "NotFound", name="snap"), kind=VIRTUAL_DISK_SNAPSHOT,
                                name="snap", namespace="demo")
    assert (err.code, err.reason) == (Code.NOT_FOUND, "RESOURCE_NOT_FOUND")
    assert err.metadata == {"kind": "VirtualDiskSnapshot", "name": "snap", "namespace": "demo"}
    assert "snap" in err.message and "demo" in err.message
    assert_no_leak(err.message)


def test_404_for_a_missing_namespace_names_the_namespace() -> None:
    body = status_body(404, "NotFound", name="nowhere", kind="namespaces")
    err = api_error_from_status(404, body, kind=VIRTUAL_DISK_SNAPSHOT, name="", namespace="nowhere")
    assert err.code is Code.NOT_FOUND
    assert err.metadata == {"kind": "Namespace", "name": "nowhere"}


@pytest.mark.parametrize("body", [
    status_body(404, "NotFound"),                      # a Status without details.name: the type is unknown
    b"404 page not found",                             # not a Status at all
    "",
    None,
])
def test_404_for_a_missing_crd_is_module_not_enabled(body: Any) -> None:
    err = api_error_from_status(404, body, kind=DATA_EXPORT, name="export-1", namespace="demo")
    assert (err.code, err.reason) == (Code.FAILED_PRECONDITION, "MODULE_NOT_ENABLED")
    assert "DataExport" in err.message and "module" in err.message
    assert err.metadata["apiVersion"] == "deckhouse.io/v1alpha1"


def test_409_already_exists() -> None:
    err = api_error_from_status(409, json.dumps(status_body(409, "AlreadyExists", name="snap")),
                                kind=VIRTUAL_DISK_SNAPSHOT, name="snap", namespace="demo")
    assert (err.code, err.reason) == (Code.ALREADY_EXISTS, "RESOURCE_ALREADY_EXISTS")
    assert_no_leak(err.message)


@pytest.mark.parametrize("body", [status_body(409, "Conflict", name="snap"), b"<html>not json</html>"])
def test_409_conflict_is_concurrent_modification(body: Any) -> None:
    # An unparsable body still maps by status: a 409 that is not AlreadyExists is a conflict.
    err = api_error_from_status(409, body, kind=VIRTUAL_DISK_SNAPSHOT, name="snap", namespace="demo")
    assert (err.code, err.reason) == (Code.ABORTED, "CONCURRENT_MODIFICATION")


def test_422_invalid_has_one_violation_per_cause_in_request_vocabulary() -> None:
    causes = [
        {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.virtualDiskName"},
        {"reason": "FieldValueInvalid", "message": "must be 1-59 chars",
         "field": "spec.clone.customization.namePrefix"},
        {"reason": "FieldValueInvalid", "message": "bad item", "field": "spec.clone.nameReplacement[0].to"},
        {"reason": "FieldValueNotSupported", "message": "Unsupported value", "field": "spec.somethingElse"},
        {"reason": "FieldValueInvalid", "message": "", "field": ""},
    ]
    body = status_body(422, "Invalid", name="vmop", causes=causes)
    err = api_error_from_status(422, json.dumps(body).encode(), kind=VIRTUAL_MACHINE_OPERATION, name="vmop",
                                namespace="demo")
    assert (err.code, err.reason) == (Code.INVALID_ARGUMENT, "CLUSTER_REJECTED")
    assert err.field_violations == [
        FieldViolation("virtual_disk_name", "Required value"),
        FieldViolation("customization.name_prefix", "must be 1-59 chars"),
        FieldViolation("name_replacements[0].to", "bad item"),
        FieldViolation("spec.somethingElse", "Unsupported value"),
        FieldViolation("", "FieldValueInvalid"),
    ]
    assert_no_leak(err.message)


def test_403_is_cluster_forbidden() -> None:
    err = api_error_from_status(403, status_body(403, "Forbidden", name="snap"), kind=VIRTUAL_DISK_SNAPSHOT,
                                name="snap", namespace="demo")
    assert (err.code, err.reason) == (Code.PERMISSION_DENIED, "CLUSTER_FORBIDDEN")
    assert_no_leak(err.message)


def test_401_is_the_gateways_fault_not_the_callers() -> None:
    err = api_error_from_status(401, status_body(401, "Unauthorized"), kind=VIRTUAL_DISK_SNAPSHOT)
    assert (err.code, err.reason) == (Code.UNAVAILABLE, "CLUSTER_UNAUTHORIZED")
    assert err.retry_after_seconds is not None
    assert_no_leak(err.message)


@pytest.mark.parametrize(("status", "header", "details_retry", "expected"), [
    (429, "7", None, 7),
    (503, None, 4, 4),
    (500, None, None, 1),
    (502, "junk", 3, 3),
    (504, "-5", None, 1),
    (503, "99999", None, 3600),
])
def test_429_and_5xx_are_unavailable_with_a_retry_hint(status: int, header: str | None, details_retry: int | None,
                                                       expected: int) -> None:
    body = status_body(status, "ServiceUnavailable", retry_after=details_retry)
    err = api_error_from_status(status, body, kind=VIRTUAL_DISK_SNAPSHOT, retry_after_header=header)
    assert (err.code, err.reason) == (Code.UNAVAILABLE, "CLUSTER_UNAVAILABLE")
    assert err.retry_after_seconds == expected
    assert_no_leak(err.message)


def test_410_on_a_list_asks_to_start_again() -> None:
    err = api_error_from_status(410, status_body(410, "Expired"), kind=VIRTUAL_DISK_SNAPSHOT)
    assert (err.code, err.reason) == (Code.ABORTED, "RESOURCE_EXPIRED")


@pytest.mark.parametrize("status", [0, 405, 415])
def test_gateway_side_mistakes_are_internal(status: int) -> None:
    err = api_error_from_status(status, b"", kind=VIRTUAL_DISK_SNAPSHOT)
    assert err.code is Code.INTERNAL


def test_400_bad_request_is_invalid_argument() -> None:
    err = api_error_from_status(400, status_body(400, "BadRequest"), kind=VIRTUAL_DISK_SNAPSHOT)
    assert (err.code, err.reason) == (Code.INVALID_ARGUMENT, "CLUSTER_REJECTED")


def test_connection_errors_never_carry_the_url() -> None:
    err = cluster_unreachable(VIRTUAL_DISK_SNAPSHOT, "ClientConnectorError")
    assert (err.code, err.reason) == (Code.UNAVAILABLE, "CLUSTER_UNREACHABLE")
    assert err.retry_after_seconds == 1
    assert err.metadata["failure"] == "connection"
    assert cluster_unreachable(VIRTUAL_DISK_SNAPSHOT, "TimeoutError", timed_out=True).metadata["failure"] == "timeout"


@pytest.mark.parametrize(("path", "expected"), [
    ("spec.virtualDiskName", "virtual_disk_name"),
    ("spec.virtualDiskNameOther", "spec.virtualDiskNameOther"),
    ("metadata.labels[app]", "labels[app]"),
    ("spec.createVirtualMachine.customization.nameSuffix", "customization.name_suffix"),
    ("status.phase", "status.phase"),
])
def test_field_paths_translate_by_whole_segments(path: str, expected: str) -> None:
    assert translate_field_path(path) == expected
