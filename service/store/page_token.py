"""Keyset page sizes, and the store's use of the deployment's page tokens
(``service.core.page_tokens``: HMAC-signed, bound to their filter)."""

from __future__ import annotations

from service.core.errors import FieldViolation, invalid_argument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


def page_limit(page_size: int) -> int:
    """0 means the server default; larger sizes are capped, negative ones rejected."""
    if page_size < 0:
        raise invalid_argument("invalid page_size", [FieldViolation("page_size", "must not be negative")])
    if page_size == 0:
        return DEFAULT_PAGE_SIZE
    return min(page_size, MAX_PAGE_SIZE)
