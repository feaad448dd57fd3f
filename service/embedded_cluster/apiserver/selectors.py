"""Label and field selectors, parsed the way the Kubernetes API server parses them."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from service.embedded_cluster.contracts import Obj, StatusError

_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_SET_OP = re.compile(r"^(?P<key>\S+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_EQ_OP = re.compile(r"^(?P<key>[^=!\s]+)\s*(?P<op>==|!=|=)\s*(?P<value>\S*)$")


def _bad(selector: str, why: str) -> StatusError:
    return StatusError(400, "BadRequest", f"unable to parse requirement: {why} in selector {selector!r}")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str                      # = != in notin exists !
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        # != and notin match objects that lack the key, as in Kubernetes
        return not present or value not in self.values


def _split_top_level(selector: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts]


def _check_key(selector: str, key: str) -> str:
    if not _KEY.match(key) or len(key) > 317:
        raise _bad(selector, f"invalid label key {key!r}")
    return key


def _check_value(selector: str, value: str) -> str:
    if not _VALUE.match(value) or len(value) > 63:
        raise _bad(selector, f"invalid label value {value!r}")
    return value


def _parse_requirement(selector: str, text: str) -> Requirement:
    if not text:
        raise _bad(selector, "empty requirement")
    if text.startswith("!"):
        return Requirement(_check_key(selector, text[1:].strip()), "!")
    set_match = _SET_OP.match(text)
    if set_match:
        values = tuple(_check_value(selector, v.strip()) for v in set_match["values"].split(","))
        return Requirement(_check_key(selector, set_match["key"]), set_match["op"], values)
    eq_match = _EQ_OP.match(text)
    if eq_match:
        op = "=" if eq_match["op"] == "==" else eq_match["op"]
        return Requirement(_check_key(selector, eq_match["key"]), op, (_check_value(selector, eq_match["value"]),))
    return Requirement(_check_key(selector, text), "exists")


def parse_label_selector(selector: str) -> list[Requirement]:
    """Parse ``a=b,c!=d,e in (f,g),h notin (i),j,!k``; raises a 400 StatusError."""
    if not selector.strip():
        return []
    return [_parse_requirement(selector, part) for part in _split_top_level(selector)]


def label_matcher(selector: str) -> Callable[[Obj], bool]:
    requirements = parse_label_selector(selector)

    def matches(obj: Obj) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(req.matches(labels) for req in requirements)

    return matches


_FIELD_PATHS = {"metadata.name": ("metadata", "name"), "metadata.namespace": ("metadata", "namespace")}


def field_matcher(selector: str) -> Callable[[Obj], bool]:
    """Field selectors on ``metadata.name`` and ``metadata.namespace`` (``=``, ``==``, ``!=``)."""
    checks: list[tuple[tuple[str, str], bool, str]] = []
    for part in (p.strip() for p in selector.split(",")) if selector.strip() else ():
        match = _EQ_OP.match(part)
        if not match:
            raise StatusError(400, "BadRequest", f"invalid field selector: {part!r}")
        path = _FIELD_PATHS.get(match["key"])
        if path is None:
            raise StatusError(400, "BadRequest", f"field label not supported: {match['key']}")
        checks.append((path, match["op"] != "!=", match["value"]))

    def matches(obj: Obj) -> bool:
        for (section, key), equal, value in checks:
            actual = str((obj.get(section) or {}).get(key) or "")
            if (actual == value) != equal:
                return False
        return True

    return matches
