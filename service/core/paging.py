"""Page tokens for cluster lists: the Kubernetes continue token, sealed (HMAC, see
``service.core.page_tokens``) with the query it belongs to, so a token can be neither
forged nor replayed against another namespace or selector."""

from __future__ import annotations

from service.core.page_tokens import PageTokens, bad_token

_KIND = "cluster-list"


def wrap(tokens: PageTokens, continue_token: str, kind: str, namespace: str, label_selector: str) -> str:
    if not continue_token:
        return ""
    return tokens.seal(_KIND, _query(kind, namespace, label_selector), {"c": continue_token})


def unwrap(tokens: PageTokens, page_token: str, kind: str, namespace: str, label_selector: str) -> str:
    """The continue token inside ``page_token`` ("" for the first page)."""
    if not page_token:
        return ""
    position = tokens.open(page_token, _KIND, _query(kind, namespace, label_selector))
    continue_token = position.get("c")
    if not isinstance(continue_token, str) or not continue_token:
        raise bad_token()
    return continue_token


def _query(kind: str, namespace: str, label_selector: str) -> dict[str, str]:
    return {"kind": kind, "namespace": namespace, "label_selector": label_selector}
