"""ObjectMeta validation: what the API server checks itself, before any schema."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from typing import Any

from service.embedded_cluster.contracts import Obj, StatusCause, StatusError

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
# The alphabet Kubernetes uses for generateName suffixes (no vowels, no look-alikes).
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def random_suffix(length: int = 5) -> str:
    return "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(length))


def invalid(kind: str, name: str, group: str, causes: list[StatusCause]) -> StatusError:
    detail = ", ".join(f"{c.field}: {c.message}" if c.field else c.message for c in causes)
    return StatusError(422, "Invalid", f'{kind} "{name}" is invalid: {detail}', causes, kind=kind, name=name,
                       group=group)


def name_causes(name: str, *, label_only: bool, field: str = "metadata.name") -> list[StatusCause]:
    limit, pattern = (63, _DNS_LABEL) if label_only else (253, _DNS_SUBDOMAIN)
    if len(name) > limit:
        return [StatusCause("FieldValueInvalid", f"Invalid value: {name!r}: must be no more than {limit} characters",
                            field)]
    if not pattern.match(name):
        return [StatusCause("FieldValueInvalid",
                            f"Invalid value: {name!r}: a lowercase RFC 1123 "
                            f"{'label' if label_only else 'subdomain'} must consist of lower case alphanumeric "
                            "characters, '-' or '.', and must start and end with an alphanumeric character", field)]
    return []


def _string_map_causes(value: Any, field: str, *, labels: bool) -> list[StatusCause]:
    if value is None:
        return []
    if not isinstance(value, dict):
        return [StatusCause("FieldValueInvalid", "Invalid value: must be an object of strings", field)]
    causes: list[StatusCause] = []
    for key, item in value.items():
        if not isinstance(key, str) or not _QUALIFIED.match(key) or len(key) > 317:
            causes.append(StatusCause("FieldValueInvalid", f"Invalid value: {key!r}: name part must consist of "
                                      "alphanumeric characters, '-', '_' or '.'", field))
        elif not isinstance(item, str):
            causes.append(StatusCause("FieldValueInvalid", "Invalid value: must be a string", f"{field}.{key}"))
        elif labels and (len(item) > 63 or not _LABEL_VALUE.match(item)):
            causes.append(StatusCause("FieldValueInvalid", f"Invalid value: {item!r}: a valid label must be an "
                                      "empty string or consist of alphanumeric characters, '-', '_' or '.'",
                                      f"{field}.{key}"))
    return causes


def _owner_causes(value: Any) -> list[StatusCause]:
    if value is None:
        return []
    if not isinstance(value, list):
        return [StatusCause("FieldValueInvalid", "Invalid value: must be a list", "metadata.ownerReferences")]
    causes: list[StatusCause] = []
    for index, ref in enumerate(value):
        field = f"metadata.ownerReferences[{index}]"
        if not isinstance(ref, dict):
            causes.append(StatusCause("FieldValueInvalid", "Invalid value: must be an object", field))
            continue
        for key in ("apiVersion", "kind", "name", "uid"):
            if not isinstance(ref.get(key), str) or not ref.get(key):
                causes.append(StatusCause("FieldValueRequired", "Required value", f"{field}.{key}"))
    return causes


def _finalizer_causes(value: Any) -> list[StatusCause]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) and _QUALIFIED.match(item) for item in value):
        return [StatusCause("FieldValueInvalid", "Invalid value: finalizers must be qualified names",
                            "metadata.finalizers")]
    return []


def metadata_causes(obj: Obj, *, namespace_type: bool) -> list[StatusCause]:
    """Every problem with ``obj.metadata`` (the name must already be set)."""
    meta = obj["metadata"]
    causes = name_causes(str(meta.get("name", "")), label_only=namespace_type)
    causes += _string_map_causes(meta.get("labels"), "metadata.labels", labels=True)
    causes += _string_map_causes(meta.get("annotations"), "metadata.annotations", labels=False)
    causes += _owner_causes(meta.get("ownerReferences"))
    causes += _finalizer_causes(meta.get("finalizers"))
    return causes
