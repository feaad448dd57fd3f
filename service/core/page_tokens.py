"""Tamper-proof page tokens: ``base64url(json) "." base64url(hmac)``.

The HMAC-SHA256 key belongs to the deployment (the store keeps it in the database, so
every replica on one database shares it): a token cannot be forged or edited, only
handed back. Inside, a token names what it pages (``kind``), a fingerprint of the query
it was issued for, and the position; a token from another query is refused by name.
Positions are still checked by their users (range, type): a key can leak.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from typing import Any

from service.core.errors import ApiError, FieldViolation, invalid_argument

MAX_TOKEN_LENGTH = 2048
KEY_BYTES = 32
_MAC_BYTES = 16
_FIELD = "page_token"


def bad_token(description: str = "not a token issued by this server") -> ApiError:
    return invalid_argument("invalid page_token", [FieldViolation(_FIELD, description)])


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def fingerprint(kind: str, query: dict[str, Any]) -> str:
    canonical = json.dumps([kind, query], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class PageTokens:
    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a page token key needs at least 16 bytes")
        self._key = key

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def seal(self, kind: str, query: dict[str, Any], position: dict[str, Any]) -> str:
        payload = json.dumps({"k": kind, "f": fingerprint(kind, query), "p": position},
                             separators=(",", ":"), sort_keys=True).encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def open(self, token: str, kind: str, query: dict[str, Any]) -> dict[str, Any]:
        """The position inside ``token``; INVALID_ARGUMENT on page_token for anything else."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise bad_token("too long")
        body, dot, mac = token.partition(".")
        if not dot or not token.isascii():
            raise bad_token()
        try:
            payload, claimed = _unb64(body), _unb64(mac)
        except (binascii.Error, ValueError):
            raise bad_token() from None
        if not hmac.compare_digest(claimed, self._mac(payload)):
            raise bad_token("the token was altered or issued by another deployment")
        try:
            doc = json.loads(payload)
        except ValueError:
            raise bad_token() from None
        if not isinstance(doc, dict) or doc.get("k") != kind or not isinstance(doc.get("p"), dict):
            raise bad_token("the token belongs to another list")
        if doc.get("f") != fingerprint(kind, query):
            raise bad_token("the token was issued for a different filter")
        position: dict[str, Any] = doc["p"]
        return position
