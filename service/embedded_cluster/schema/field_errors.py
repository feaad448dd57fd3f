"""Field errors as k8s.io/apimachinery's ``field.Error``, and the 422 Status they make."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from service.embedded_cluster.contracts import StatusCause, StatusError

REQUIRED = "FieldValueRequired"
NOT_SUPPORTED = "FieldValueNotSupported"
INVALID = "FieldValueInvalid"
TYPE_INVALID = "FieldValueTypeInvalid"
TOO_LONG = "FieldValueTooLong"
TOO_MANY = "FieldValueTooMany"
DUPLICATE = "FieldValueDuplicate"
FORBIDDEN = "FieldValueForbidden"

# The reasons a CEL rule may name (x-kubernetes-validations[].reason).
RULE_REASONS = frozenset({INVALID, FORBIDDEN, REQUIRED, DUPLICATE})


def quote(value: Any) -> str:
    """A value as Go's field errors print it: strings quoted, the rest as JSON."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError):
        return repr(value)


@dataclass(frozen=True)
class FieldError:
    reason: str
    field: str
    body: str   # the message without the field, e.g. 'Required value' or 'Invalid value: "x": ...'

    def __str__(self) -> str:
        return f"{self.field}: {self.body}" if self.field else self.body

    def cause(self) -> StatusCause:
        return StatusCause(self.reason, self.body, self.field)


def required(field: str, detail: str = "") -> FieldError:
    return FieldError(REQUIRED, field, f"Required value: {detail}" if detail else "Required value")


def not_supported(field: str, value: Any, supported: list[Any]) -> FieldError:
    choices = ", ".join(quote(choice) for choice in supported)
    return FieldError(NOT_SUPPORTED, field, f"Unsupported value: {quote(value)}: supported values: {choices}")


def invalid(field: str, value: Any, detail: str) -> FieldError:
    return FieldError(INVALID, field, f"Invalid value: {quote(value)}: {detail}")


def type_invalid(field: str, value: Any, detail: str) -> FieldError:
    return FieldError(TYPE_INVALID, field, f"Invalid value: {quote(value)}: {detail}")


def too_long(field: str, limit: int) -> FieldError:
    return FieldError(TOO_LONG, field, f"Too long: may not be longer than {limit}")


def too_many(field: str, actual: int, limit: int) -> FieldError:
    return FieldError(TOO_MANY, field, f"Too many: {actual}: must have at most {limit} items")


def duplicate(field: str, value: Any) -> FieldError:
    return FieldError(DUPLICATE, field, f"Duplicate value: {quote(value)}")


def forbidden(field: str, detail: str) -> FieldError:
    return FieldError(FORBIDDEN, field, f"Forbidden: {detail}")


def rule_error(reason: str, field: str, type_label: str, message: str) -> FieldError:
    """A failed CEL rule, worded per the reason the rule declares."""
    if reason == FORBIDDEN:
        return forbidden(field, message)
    if reason == REQUIRED:
        return required(field, message)
    if reason == DUPLICATE:
        return FieldError(DUPLICATE, field, f"Duplicate value: {quote(type_label)}: {message}")
    return invalid(field, type_label, message)


def invalid_status(kind: str, group: str, name: str, errors: list[FieldError]) -> StatusError:
    """metav1.Status 422 as apierrors.NewInvalid builds it (one error bare, several in brackets)."""
    qualified = f"{kind}.{group}" if group else kind
    texts = [str(error) for error in errors]
    summary = texts[0] if len(texts) == 1 else f"[{', '.join(texts)}]"
    return StatusError(422, "Invalid", f'{qualified} "{name}" is invalid: {summary}',
                       causes=[error.cause() for error in errors], kind=kind, name=name, group=group)
