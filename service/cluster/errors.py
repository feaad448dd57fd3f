"""Kubernetes failures -> ``core.errors.ApiError``, in one place.

Pure functions: a status code and a ``metav1.Status`` body in, an ``ApiError`` out.
The raw body, the cluster's URL and the gateway's credentials never reach a message;
only the cluster's own validation texts (Status causes) are passed on, because the
caller can act on them.
"""

from __future__ import annotations

import json
from typing import Any

from service.core.errors import ApiError, Code, FieldViolation
from service.core.ports import ResourceKind

# Cluster field paths -> the request fields a caller sets (longest prefix wins).
_FIELD_VOCABULARY: dict[str, str] = {
    "metadata.name": "name",
    "metadata.generateName": "generate_name",
    "metadata.labels": "labels",
    "metadata.annotations": "annotations",
    "spec.virtualDiskName": "virtual_disk_name",
    "spec.virtualMachineName": "virtual_machine_name",
    "spec.requiredConsistency": "required_consistency",
    "spec.keepIPAddress": "keep_ip_address",
    "spec.persistentVolumeClaim.size": "size",
    "spec.persistentVolumeClaim.storageClassName": "storage_class_name",
    "spec.dataSource.objectRef.name": "disk_snapshot_name",
    "spec.restore.mode": "mode",
    "spec.restore.virtualMachineSnapshotName": "virtual_machine_snapshot_name",
    "spec.clone.mode": "mode",
    "spec.clone.nameReplacement": "name_replacements",
    "spec.clone.customization.namePrefix": "customization.name_prefix",
    "spec.clone.customization.nameSuffix": "customization.name_suffix",
    "spec.clone.customization": "customization",
    "spec.createVirtualMachine.mode": "mode",
    "spec.createVirtualMachine.nameReplacement": "name_replacements",
    "spec.createVirtualMachine.customization.namePrefix": "customization.name_prefix",
    "spec.createVirtualMachine.customization.nameSuffix": "customization.name_suffix",
    "spec.createVirtualMachine.customization": "customization",
    "spec.ttl": "ttl",
    "spec.publish": "publish",
}

# Which platform module serves a group, to name it when its CRD is missing.
_MODULE_BY_KIND: dict[str, str] = {
    "DataExport": "the data export module (storage-volume-data-manager)",
}
_MODULE_BY_GROUP: dict[str, str] = {
    "virtualization.deckhouse.io": "the virtualization module",
}

# How long a caller should wait when the cluster gives no hint.
DEFAULT_RETRY_AFTER_SECONDS = 1


def translate_field_path(path: str) -> str:
    """``spec.clone.nameReplacement[0].to`` -> ``name_replacements[0].to``; unknown paths unchanged."""
    for prefix in sorted(_FIELD_VOCABULARY, key=len, reverse=True):
        if path == prefix or path.startswith((prefix + ".", prefix + "[")):
            return _FIELD_VOCABULARY[prefix] + path[len(prefix):]
    return path


def parse_status_body(body: bytes | str | dict[str, Any] | None) -> dict[str, Any]:
    """The body as a ``metav1.Status`` dict, or ``{}`` when it is not one (HTML, text, junk)."""
    if isinstance(body, dict):
        return body
    if body is None:
        return {}
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _details(status_body: dict[str, Any]) -> dict[str, Any]:
    details = status_body.get("details")
    return details if isinstance(details, dict) else {}


def _retry_after(status_body: dict[str, Any], retry_after_header: str | None) -> int:
    candidates: list[object] = [retry_after_header, _details(status_body).get("retryAfterSeconds")]
    for value in candidates:
        if value is None or isinstance(value, bool):
            continue
        try:
            seconds = int(str(value).strip())
        except ValueError:
            continue
        if seconds > 0:
            return min(seconds, 3600)
    return DEFAULT_RETRY_AFTER_SECONDS


def _violations(status_body: dict[str, Any]) -> list[FieldViolation]:
    causes = _details(status_body).get("causes")
    if not isinstance(causes, list):
        return []
    violations = []
    for cause in causes:
        if not isinstance(cause, dict):
            continue
        path = str(cause.get("field") or "")
        message = str(cause.get("message") or cause.get("reason") or "invalid value")
        violations.append(FieldViolation(translate_field_path(path), message))
    return violations


def _subject(kind: ResourceKind, name: str, namespace: str | None) -> str:
    named = f" {name!r}" if name else "s"
    where = f" in namespace {namespace!r}" if namespace else ""
    return f"{kind.kind}{named}{where}"


def _metadata(kind: ResourceKind, name: str, namespace: str | None) -> dict[str, str]:
    meta = {"kind": kind.kind}
    if name:
        meta["name"] = name
    if namespace:
        meta["namespace"] = namespace
    return meta


def crd_missing(status_body: dict[str, Any]) -> bool:
    """A 404 for the resource *type* rather than for one object: a real API server then
    answers with empty details (or no Status at all), never naming the object."""
    if status_body.get("kind") != "Status":
        return True
    return not _details(status_body).get("name")


def _not_found(status_body: dict[str, Any], kind: ResourceKind, name: str, namespace: str | None) -> ApiError:
    details = _details(status_body)
    if details.get("kind") in ("namespaces", "Namespace"):
        missing = str(details.get("name"))
        return ApiError(Code.NOT_FOUND, "RESOURCE_NOT_FOUND", f"namespace {missing!r} not found",
                        metadata={"kind": "Namespace", "name": missing})
    return ApiError(Code.NOT_FOUND, "RESOURCE_NOT_FOUND", f"{_subject(kind, name, namespace)} not found",
                    metadata=_metadata(kind, name, namespace))


def module_not_enabled(kind: ResourceKind) -> ApiError:
    module = _MODULE_BY_KIND.get(kind.kind) or _MODULE_BY_GROUP.get(kind.group) or f"the module serving {kind.group}"
    return ApiError(
        Code.FAILED_PRECONDITION, "MODULE_NOT_ENABLED",
        f"the cluster does not serve {kind.kind} ({kind.api_version}): {module} is not enabled",
        metadata={"kind": kind.kind, "apiVersion": kind.api_version},
    )


def api_error_from_status(status: int, body: bytes | str | dict[str, Any] | None, *, kind: ResourceKind,
                          name: str = "", namespace: str | None = None,
                          retry_after_header: str | None = None) -> ApiError:
    """Map one failed Kubernetes response to the gateway's error model."""
    status_body = parse_status_body(body)
    reason = str(status_body.get("reason") or "")
    subject = _subject(kind, name, namespace)
    meta = _metadata(kind, name, namespace)

    if status == 404:
        return module_not_enabled(kind) if crd_missing(status_body) else _not_found(status_body, kind, name, namespace)
    if status == 409:
        if reason == "AlreadyExists":
            return ApiError(Code.ALREADY_EXISTS, "RESOURCE_ALREADY_EXISTS", f"{subject} already exists", metadata=meta)
        return ApiError(Code.ABORTED, "CONCURRENT_MODIFICATION",
                        f"{subject} was modified concurrently; read it again and retry", metadata=meta)
    if status in (400, 422):
        return ApiError(Code.INVALID_ARGUMENT, "CLUSTER_REJECTED", f"the cluster rejected {subject}",
                        field_violations=_violations(status_body), metadata=meta)
    if status == 403:
        return ApiError(Code.PERMISSION_DENIED, "CLUSTER_FORBIDDEN",
                        f"the gateway is not allowed to access {subject} in the cluster", metadata=meta)
    if status == 401:
        return ApiError(Code.UNAVAILABLE, "CLUSTER_UNAUTHORIZED",
                        "the cluster did not accept the gateway's credentials",
                        retry_after_seconds=_retry_after(status_body, retry_after_header))
    if status == 410:
        return ApiError(Code.ABORTED, "RESOURCE_EXPIRED",
                        f"the listing of {kind.kind} expired; start again from the first page", metadata=meta)
    if status == 429 or status >= 500:
        return ApiError(Code.UNAVAILABLE, "CLUSTER_UNAVAILABLE",
                        f"the cluster is unavailable (HTTP {status}); retry later",
                        metadata=meta, retry_after_seconds=_retry_after(status_body, retry_after_header))
    # 405, 406, 415 and anything else unexpected: the gateway's request was wrong, not the caller's.
    return ApiError(Code.INTERNAL, "CLUSTER_REQUEST_FAILED",
                    f"the cluster refused the gateway's request for {subject} (HTTP {status})", metadata=meta)


def cluster_unreachable(kind: ResourceKind, cause: str, *, timed_out: bool = False) -> ApiError:
    """A connection error or timeout; ``cause`` is an exception class name, never a URL.
    ``metadata["failure"]`` tells a timeout (the cluster is slow) from a refused connection."""
    return ApiError(Code.UNAVAILABLE, "CLUSTER_UNREACHABLE",
                    f"the cluster could not be reached while accessing {kind.kind} ({cause}); retry later",
                    metadata={"kind": kind.kind, "failure": "timeout" if timed_out else "connection"},
                    retry_after_seconds=DEFAULT_RETRY_AFTER_SECONDS)


def watch_expired(kind: ResourceKind) -> ApiError:
    return ApiError(Code.ABORTED, "WATCH_EXPIRED",
                    f"the watch on {kind.kind} fell too far behind the cluster; relist and watch again",
                    metadata={"kind": kind.kind})
