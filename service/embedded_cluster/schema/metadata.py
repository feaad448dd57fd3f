"""ObjectMeta checks of a custom resource (apimachinery's ValidateObjectMeta), with
Kubernetes' wording."""

from __future__ import annotations

from typing import Any

from service.embedded_cluster.schema import field_errors as fe
from service.embedded_cluster.schema.field_errors import FieldError
from service.embedded_cluster.schema.regex import regex

_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = rf"{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*"
_QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = rf"({_QUALIFIED_NAME})?"
# RE2, as Go's validators: linear time, and "$" does not match before a trailing newline.
_LABEL_RE = regex(rf"^{_DNS1123_LABEL}$")
_SUBDOMAIN_RE = regex(rf"^{_DNS1123_SUBDOMAIN}$")
_QUALIFIED_NAME_RE = regex(rf"^{_QUALIFIED_NAME}$")
_LABEL_VALUE_RE = regex(rf"^{_LABEL_VALUE}$")

SUBDOMAIN_MESSAGE = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                     "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
                     f"validation is '{_DNS1123_SUBDOMAIN}')")
LABEL_MESSAGE = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
                 "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
                 f"validation is '{_DNS1123_LABEL}')")
QUALIFIED_NAME_MESSAGE = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
                          "end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex "
                          f"used for validation is '{_QUALIFIED_NAME}')")
LABEL_VALUE_MESSAGE = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
                       "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value', "
                       f" or '12345', regex used for validation is '{_LABEL_VALUE}')")
ANNOTATIONS_MAX_BYTES = 256 * 1024


def subdomain_problems(value: str) -> list[str]:
    problems = [] if len(value) <= 253 else ["must be no more than 253 characters"]
    return problems + ([] if _SUBDOMAIN_RE.matches(value) else [SUBDOMAIN_MESSAGE])


def qualified_name_problems(value: str) -> list[str]:
    """IsQualifiedName: an optional DNS subdomain prefix, a slash, and a name of at most 63."""
    prefix, slash, name = value.rpartition("/")
    problems: list[str] = []
    if slash:
        if not prefix:
            problems.append("prefix part must be non-empty")
        else:
            problems.extend(f"prefix part {problem}" for problem in subdomain_problems(prefix))
    if not name:
        problems.append("name part must be non-empty")
    elif len(name) > 63:
        problems.append("name part must be no more than 63 characters")
    if name and not _QUALIFIED_NAME_RE.matches(name):
        problems.append(QUALIFIED_NAME_MESSAGE)
    return problems


def _string_map(value: Any, path: str, errors: list[FieldError]) -> dict[str, str]:
    if not isinstance(value, dict):
        errors.append(fe.type_invalid(path, value, f"{path} must be a map of string keys to string values"))
        return {}
    good: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, str):
            good[key] = item
        else:
            errors.append(fe.type_invalid(f"{path}[{key}]", item, "must be a string"))
    return good


def _labels(value: Any, errors: list[FieldError]) -> None:
    for key, item in _string_map(value, "metadata.labels", errors).items():
        errors.extend(fe.invalid("metadata.labels", key, problem) for problem in qualified_name_problems(key))
        if len(item) > 63:
            errors.append(fe.invalid("metadata.labels", item, "must be no more than 63 characters"))
        if not _LABEL_VALUE_RE.matches(item):
            errors.append(fe.invalid("metadata.labels", item, LABEL_VALUE_MESSAGE))


def _annotations(value: Any, errors: list[FieldError]) -> None:
    annotations = _string_map(value, "metadata.annotations", errors)
    for key in annotations:
        errors.extend(fe.invalid("metadata.annotations", key, problem)
                      for problem in qualified_name_problems(key.lower()))
    total = sum(len(key) + len(item) for key, item in annotations.items())
    if total > ANNOTATIONS_MAX_BYTES:
        errors.append(fe.FieldError(fe.TOO_LONG, "metadata.annotations",
                                    f"Too long: must have at most {ANNOTATIONS_MAX_BYTES} bytes"))


def _finalizers(value: Any, errors: list[FieldError]) -> None:
    if not isinstance(value, list):
        errors.append(fe.type_invalid("metadata.finalizers", value, "must be a list of strings"))
        return
    for position, item in enumerate(value):
        path = f"metadata.finalizers[{position}]"
        if not isinstance(item, str):
            errors.append(fe.type_invalid(path, item, "must be a string"))
            continue
        errors.extend(fe.invalid(path, item, problem) for problem in qualified_name_problems(item))


def validate_object_meta(meta: Any, *, namespaced: bool) -> list[FieldError]:
    """Errors of ``metadata``: name (a DNS-1123 subdomain), namespace, labels, annotations, finalizers."""
    errors: list[FieldError] = []
    if not isinstance(meta, dict):
        return [fe.required("metadata")] if meta is None else [fe.type_invalid("metadata", meta, "must be an object")]
    name, generate_name = meta.get("name"), meta.get("generateName")
    if not name:
        if not generate_name:
            errors.append(fe.required("metadata.name", "name or generateName is required"))
    elif not isinstance(name, str):
        errors.append(fe.type_invalid("metadata.name", name, "must be a string"))
    else:
        errors.extend(fe.invalid("metadata.name", name, problem) for problem in subdomain_problems(name))
    namespace = meta.get("namespace")
    if not namespaced and namespace:
        errors.append(fe.forbidden("metadata.namespace", "not allowed on this type"))
    elif namespaced and namespace and (not isinstance(namespace, str) or len(namespace) > 63
                                       or not _LABEL_RE.matches(namespace)):
        errors.append(fe.invalid("metadata.namespace", namespace, LABEL_MESSAGE))
    if meta.get("labels") is not None:
        _labels(meta["labels"], errors)
    if meta.get("annotations") is not None:
        _annotations(meta["annotations"], errors)
    if meta.get("finalizers") is not None:
        _finalizers(meta["finalizers"], errors)
    return errors
