"""Opaque page tokens for cluster lists: the Kubernetes continue token, wrapped with the
query it belongs to, so a token cannot be replayed against another namespace/selector."""

from __future__ import annotations

import base64
import binascii
import json

from service.core.errors import FieldViolation, invalid_argument

_VERSION = 1


def wrap(continue_token: str, namespace: str, label_selector: str) -> str:
    if not continue_token:
        return ""
    doc = {"v": _VERSION, "c": continue_token, "n": namespace, "s": label_selector}
    return base64.urlsafe_b64encode(json.dumps(doc, separators=(",", ":")).encode()).decode().rstrip("=")


def unwrap(page_token: str, namespace: str, label_selector: str) -> str:
    """The continue token inside ``page_token`` ("" for the first page)."""
    if not page_token:
        return ""
    bad = invalid_argument("page_token is invalid",
                           [FieldViolation("page_token", "must be a next_page_token from the same list call")])
    try:
        doc = json.loads(base64.urlsafe_b64decode(page_token + "=" * (-len(page_token) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    if (not isinstance(doc, dict) or doc.get("v") != _VERSION or doc.get("n") != namespace
            or doc.get("s") != label_selector or not isinstance(doc.get("c"), str) or not doc["c"]):
        raise bad
    token: str = doc["c"]
    return token
