"""Static-token authentication and a policy-file authorizer (plus TokenReview and
SubjectAccessReview answered from the same policy)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from service.embedded_cluster.contracts import Obj, ResourceType, StatusError

ADMIN_USER = "admin"
ADMIN_GROUPS = ("system:masters", "system:authenticated")
VERBS = frozenset({"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"})


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()

    @property
    def is_admin(self) -> bool:
        return "system:masters" in self.groups


@dataclass(frozen=True)
class Rule:
    subjects: frozenset[str]
    namespaces: frozenset[str]
    verbs: frozenset[str]
    resources: frozenset[str]

    def allows(self, user: User, verb: str, resource: str, namespace: str) -> bool:
        names = {user.name} | {f"group:{group}" for group in user.groups}
        return (bool(self.subjects & names)
                and ("*" in self.namespaces or namespace in self.namespaces)
                and ("*" in self.verbs or verb in self.verbs)
                and ("*" in self.resources or resource in self.resources))


@dataclass
class Policy:
    users: dict[str, User] = field(default_factory=dict)      # token -> user
    rules: list[Rule] = field(default_factory=list)


def _strings(value: Any, where: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"policy: {where} must be a list of strings")
    return frozenset(value)


def parse_policy(document: Any) -> Policy:
    """Validate a policy document (see the module doc of ``server``); raises ValueError."""
    if document is None:
        return Policy()
    if not isinstance(document, dict):
        raise ValueError("policy: the document must be a mapping")
    policy = Policy()
    for index, entry in enumerate(document.get("users") or []):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
            raise ValueError(f"policy: users[{index}] needs a name")
        token = entry.get("token")
        if not isinstance(token, str) or len(token) < 8:
            raise ValueError(f"policy: users[{index}] needs a token of at least 8 characters")
        groups = _strings(entry.get("groups") or [], f"users[{index}].groups")
        policy.users[token] = User(entry["name"], (*sorted(groups), "system:authenticated"))
    for index, entry in enumerate(document.get("rules") or []):
        if not isinstance(entry, dict):
            raise ValueError(f"policy: rules[{index}] must be a mapping")
        policy.rules.append(Rule(_strings(entry.get("subjects"), f"rules[{index}].subjects"),
                                 _strings(entry.get("namespaces"), f"rules[{index}].namespaces"),
                                 _strings(entry.get("verbs"), f"rules[{index}].verbs"),
                                 _strings(entry.get("resources"), f"rules[{index}].resources")))
    return policy


def load_policy(path: Path | None) -> Policy:
    if path is None:
        return Policy()
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"policy: {path} is not valid YAML: {error}") from None
    return parse_policy(document)


class Authority:
    """Who a token belongs to, and what they may do."""

    def __init__(self, admin_token: str, policy: Policy) -> None:
        self._tokens: list[tuple[bytes, User]] = [(admin_token.encode(), User(ADMIN_USER, ADMIN_GROUPS))]
        self._tokens += [(token.encode(), user) for token, user in policy.users.items()]
        self._rules = policy.rules

    def authenticate(self, token: str) -> User | None:
        candidate = token.encode()
        found: User | None = None
        for known, user in self._tokens:
            # Compare against every token so timing does not reveal which one is close.
            if hmac.compare_digest(known, candidate):
                found = user
        return found

    def username(self, token: str) -> str | None:
        user = self.authenticate(token)
        return user.name if user else None

    def allowed(self, user: User, verb: str, resource: str, namespace: str, subresource: str = "") -> bool:
        if user.is_admin:
            return True
        # As in RBAC: a subresource is its own resource ("virtualdisksnapshots/status").
        name = f"{resource}/{subresource}" if subresource else resource
        return any(rule.allows(user, verb, name, namespace) for rule in self._rules)

    def authorize(self, user: User, verb: str, rtype: ResourceType, namespace: str, name: str,
                  subresource: str = "") -> None:
        if self.allowed(user, verb, rtype.plural, namespace, subresource):
            return
        what = f'{rtype.key} "{name}"' if name else rtype.key
        shown = f"{rtype.plural}/{subresource}" if subresource else rtype.plural
        scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
        raise StatusError(403, "Forbidden", f'{what} is forbidden: User "{user.name}" cannot {verb} resource '
                          f'"{shown}" in API group "{rtype.group}" {scope}', kind=rtype.plural, name=name,
                          group=rtype.group)

    def token_review(self, body: Obj) -> Obj:
        spec = body.get("spec")
        token = spec.get("token") if isinstance(spec, dict) else None
        if not isinstance(token, str) or not token:
            raise StatusError(422, "Invalid", "TokenReview.authentication.k8s.io is invalid: spec.token: Required")
        user = self.authenticate(token)
        status: Obj = {"authenticated": user is not None}
        if user is not None:
            status["user"] = {"username": user.name, "groups": list(user.groups)}
        else:
            status["error"] = "invalid bearer token"
        return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                "metadata": {"creationTimestamp": None}, "spec": {}, "status": status}

    def subject_access_review(self, body: Obj) -> Obj:
        spec = body.get("spec")
        if not isinstance(spec, dict) or not isinstance(spec.get("user", ""), str):
            raise StatusError(422, "Invalid", "SubjectAccessReview.authorization.k8s.io is invalid: spec: Required")
        attributes = spec.get("resourceAttributes") or {}
        groups = spec.get("groups") or []
        if not isinstance(attributes, dict) or not isinstance(groups, list):
            raise StatusError(422, "Invalid", "SubjectAccessReview.authorization.k8s.io is invalid: "
                              "spec.resourceAttributes and spec.groups must be an object and a list")
        user = User(str(spec.get("user", "")), tuple(str(group) for group in groups))
        allowed = user.name == ADMIN_USER or self.allowed(
            user, str(attributes.get("verb", "")), str(attributes.get("resource", "")),
            str(attributes.get("namespace", "")), str(attributes.get("subresource", "")))
        status: Obj = {"allowed": allowed}
        if not allowed:
            status["reason"] = "no policy rule allows it"
        return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                "metadata": {"creationTimestamp": None}, "spec": spec, "status": status}
