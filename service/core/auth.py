"""Who is calling (authentication) and what they may do (authorization).

Tokens are kept as SHA-256 hashes so a leaked token file does not leak tokens; every
comparison is constant-time. The policy is a list of allow rules (no deny rules): a
call is allowed when one rule matches the subject (or one of its groups), the
namespace, the verb and the resource. Formats: docs/security.md.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import yaml

from service.core.domain import Caller

WILDCARD = "*"
GROUP_PREFIX = "group:"
DEV_SUBJECT = "dev"
DEV_GROUPS = ("admins", "auditors")
# Resource names the policy speaks about (the REST path segments).
RESOURCE_DISK_SNAPSHOTS = "disk-snapshots"
RESOURCE_OPERATIONS = "operations"
RESOURCE_AUDIT = "audit"

T = TypeVar("T")


class AuthConfigError(ValueError):
    """A token or policy file that cannot be used; raised at start, never per call."""


class Authenticator(Protocol):
    async def authenticate(self, token: str) -> Caller | None:
        """The caller a bearer token belongs to, or None when the token is unknown."""


class Authorizer(Protocol):
    async def allowed(self, caller: Caller, *, verb: str, resource: str, namespace: str) -> bool:
        """Whether ``caller`` may ``verb`` ``resource`` in ``namespace`` ("" = cluster-wide)."""


def sha256_hex(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenEntry:
    subject: str
    groups: tuple[str, ...]
    token_sha256: bytes


class StaticTokenAuthenticator:
    def __init__(self, entries: Sequence[TokenEntry]) -> None:
        self._entries = tuple(entries)

    @classmethod
    def from_file(cls, path: str | Path) -> StaticTokenAuthenticator:
        return cls(_parse_file(path, parse_token_file))

    async def authenticate(self, token: str) -> Caller | None:
        if not token:
            return None
        presented = hashlib.sha256(token.encode()).digest()
        found: TokenEntry | None = None
        # Compare against every entry (no early exit) so timing does not reveal which matched.
        for entry in self._entries:
            if hmac.compare_digest(presented, entry.token_sha256):
                found = entry
        return Caller(found.subject, found.groups) if found else None


def parse_token_file(doc: Any) -> list[TokenEntry]:
    if not isinstance(doc, dict) or not isinstance(doc.get("tokens"), list):
        raise AuthConfigError("token file must be a mapping with a 'tokens' list")
    entries: list[TokenEntry] = []
    for index, item in enumerate(doc["tokens"]):
        where = f"tokens[{index}]"
        if not isinstance(item, dict):
            raise AuthConfigError(f"{where} must be a mapping")
        subject = item.get("subject")
        if not isinstance(subject, str) or not subject:
            raise AuthConfigError(f"{where}.subject must be a non-empty string")
        groups = _string_list(item.get("groups", []), f"{where}.groups")
        entries.append(TokenEntry(subject, tuple(groups), _token_digest(item, where)))
    return entries


def _token_digest(item: dict[str, Any], where: str) -> bytes:
    hashed, plain = item.get("token_sha256"), item.get("token")
    if (hashed is None) == (plain is None):
        raise AuthConfigError(f"{where} needs exactly one of token_sha256 (preferred) or token")
    if hashed is not None:
        if not isinstance(hashed, str) or len(hashed) != 64:
            raise AuthConfigError(f"{where}.token_sha256 must be 64 hex digits")
        try:
            return bytes.fromhex(hashed)
        except ValueError as exc:
            raise AuthConfigError(f"{where}.token_sha256 must be 64 hex digits") from exc
    if not isinstance(plain, str) or len(plain) < 16:
        raise AuthConfigError(f"{where}.token must be a string of at least 16 characters")
    return hashlib.sha256(plain.encode()).digest()


def create_dev_token_file(path: str | Path) -> str:
    """Write a token file with one dev subject (admins + auditors) and return its token.

    Only the hash is written; the plain token exists once, in the return value."""
    token = secrets.token_urlsafe(32)
    doc = {"tokens": [{"subject": DEV_SUBJECT, "groups": list(DEV_GROUPS), "token_sha256": sha256_hex(token)}]}
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        yaml.safe_dump(doc, handle, sort_keys=False)
    return token


# ---------------------------------------------------------------- authorization


@dataclass(frozen=True)
class PolicyRule:
    subjects: frozenset[str]     # "alice", "group:admins" or "*"
    namespaces: frozenset[str]   # "demo" or "*"
    verbs: frozenset[str]
    resources: frozenset[str]

    def matches(self, caller: Caller, verb: str, resource: str, namespace: str) -> bool:
        principals = {caller.subject, *(GROUP_PREFIX + g for g in caller.groups)}
        return (
            (WILDCARD in self.subjects or bool(principals & self.subjects))
            # A cluster-wide question ("" namespace) is only answered by a "*" grant.
            and (WILDCARD in self.namespaces or (bool(namespace) and namespace in self.namespaces))
            and (WILDCARD in self.verbs or verb in self.verbs)
            and (WILDCARD in self.resources or resource in self.resources)
        )


class PolicyAuthorizer:
    def __init__(self, rules: Iterable[PolicyRule]) -> None:
        self._rules = tuple(rules)

    @classmethod
    def from_file(cls, path: str | Path) -> PolicyAuthorizer:
        return cls(_parse_file(path, parse_policy))

    @classmethod
    def allow_all_for_groups(cls, *groups: str) -> PolicyAuthorizer:
        """Everything, everywhere, for members of ``groups`` (the embedded default)."""
        subjects = frozenset(GROUP_PREFIX + g for g in groups)
        star = frozenset({WILDCARD})
        return cls([PolicyRule(subjects, star, star, star)])

    async def allowed(self, caller: Caller, *, verb: str, resource: str, namespace: str) -> bool:
        return any(rule.matches(caller, verb, resource, namespace) for rule in self._rules)


def parse_policy(doc: Any) -> list[PolicyRule]:
    if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list):
        raise AuthConfigError("policy file must be a mapping with a 'rules' list")
    rules: list[PolicyRule] = []
    for index, item in enumerate(doc["rules"]):
        where = f"rules[{index}]"
        if not isinstance(item, dict):
            raise AuthConfigError(f"{where} must be a mapping")
        fields = {name: frozenset(_string_list(item.get(name), f"{where}.{name}", required=True))
                  for name in ("subjects", "namespaces", "verbs", "resources")}
        rules.append(PolicyRule(**fields))
    return rules


def _string_list(value: Any, where: str, *, required: bool = False) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(x, str) and x for x in value):
        raise AuthConfigError(f"{where} must be a list of non-empty strings")
    if required and not value:
        raise AuthConfigError(f"{where} must not be empty")
    return list(value)


def _load_yaml(path: str | Path) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return yaml.safe_load(handle)
    except OSError as exc:
        reason = exc.strerror.lower() if exc.strerror else type(exc).__name__
        raise AuthConfigError(f"cannot read {path}: {reason}") from None
    except UnicodeDecodeError:
        raise AuthConfigError(f"{path} is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        # Only the position: the parser's text quotes the file, which may hold plain tokens.
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise AuthConfigError(f"{path} is not valid YAML{at}") from None


def _parse_file(path: str | Path, parse: Callable[[Any], list[T]]) -> list[T]:
    """Load and parse a token or policy file; a shape error names the file too."""
    doc = _load_yaml(path)
    try:
        return parse(doc)
    except AuthConfigError as exc:
        raise AuthConfigError(f"{path}: {exc}") from None


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` value, or "" when absent/malformed."""
    if not authorization:
        return ""
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token or len(token) > 8192:
        return ""
    return token
