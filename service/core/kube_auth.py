"""Authentication and authorization by the cluster (real deployments): TokenReview and
SubjectAccessReview through the ``ClusterClient``, with short-lived caches keyed by the
token's SHA-256 (never the token) so a busy caller costs one review per period."""

from __future__ import annotations

import hashlib
import time
from typing import Any

from service.core.domain import Caller
from service.core.errors import ERROR_DOMAIN, ApiError, unavailable
from service.core.ports import ClusterClient, ResourceKind

TOKEN_REVIEW = ResourceKind("authentication.k8s.io", "v1", "tokenreviews", "TokenReview", namespaced=False)
SUBJECT_ACCESS_REVIEW = ResourceKind("authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview",
                                     namespaced=False)
# The API group RBAC rules name to grant gateway permissions.
RBAC_GROUP = ERROR_DOMAIN
CACHE_LIMIT = 10_000


class _TtlCache:
    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._entries: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any) -> tuple[bool, Any]:
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            self._entries.pop(key, None)
            return False, None
        return True, entry[1]

    def put(self, key: Any, value: Any) -> None:
        if len(self._entries) >= CACHE_LIMIT:
            self._entries.clear()  # bounded memory; a refill costs one review per caller
        self._entries[key] = (time.monotonic() + self._ttl, value)


def _review_failed(exc: ApiError, what: str) -> ApiError:
    return unavailable(f"the cluster could not {what}", retry_after_seconds=exc.retry_after_seconds or 1,
                       reason="AUTH_REVIEW_UNAVAILABLE")


class TokenReviewAuthenticator:
    def __init__(self, cluster: ClusterClient, *, cache_seconds: float = 30.0,
                 audiences: list[str] | None = None) -> None:
        self._cluster = cluster
        self._cache = _TtlCache(cache_seconds)
        self._audiences = audiences or []

    async def authenticate(self, token: str) -> Caller | None:
        if not token:
            return None
        key = hashlib.sha256(token.encode()).hexdigest()
        hit, cached = self._cache.get(key)
        if hit:
            return cached  # type: ignore[no-any-return]
        spec: dict[str, Any] = {"token": token}
        if self._audiences:
            spec["audiences"] = self._audiences
        body = {"apiVersion": TOKEN_REVIEW.api_version, "kind": TOKEN_REVIEW.kind, "spec": spec}
        try:
            answer = await self._cluster.create(TOKEN_REVIEW, "", body)
        except ApiError as exc:
            raise _review_failed(exc, "review the token") from None
        caller = _caller_from_review(answer)
        self._cache.put(key, caller)
        return caller


def _caller_from_review(answer: dict[str, Any]) -> Caller | None:
    status = answer.get("status") if isinstance(answer.get("status"), dict) else {}
    assert isinstance(status, dict)
    if status.get("authenticated") is not True:
        return None
    user = status.get("user") if isinstance(status.get("user"), dict) else {}
    assert isinstance(user, dict)
    username = user.get("username")
    if not isinstance(username, str) or not username:
        return None
    groups = user.get("groups") if isinstance(user.get("groups"), list) else []
    assert isinstance(groups, list)
    return Caller(username, tuple(g for g in groups if isinstance(g, str)))


class SubjectAccessReviewAuthorizer:
    def __init__(self, cluster: ClusterClient, *, cache_seconds: float = 10.0) -> None:
        self._cluster = cluster
        self._cache = _TtlCache(cache_seconds)

    async def allowed(self, caller: Caller, *, verb: str, resource: str, namespace: str) -> bool:
        key = (caller.subject, caller.groups, verb, resource, namespace)
        hit, cached = self._cache.get(key)
        if hit:
            return bool(cached)
        attributes = {"group": RBAC_GROUP, "resource": resource, "verb": verb}
        if namespace:
            attributes["namespace"] = namespace
        body = {"apiVersion": SUBJECT_ACCESS_REVIEW.api_version, "kind": SUBJECT_ACCESS_REVIEW.kind,
                "spec": {"user": caller.subject, "groups": list(caller.groups), "resourceAttributes": attributes}}
        try:
            answer = await self._cluster.create(SUBJECT_ACCESS_REVIEW, "", body)
        except ApiError as exc:
            raise _review_failed(exc, "review the permission") from None
        status = answer.get("status")
        allowed = isinstance(status, dict) and status.get("allowed") is True
        self._cache.put(key, allowed)
        return allowed
