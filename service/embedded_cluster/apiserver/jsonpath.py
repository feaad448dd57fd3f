"""The JSONPath subset CRDs use in additionalPrinterColumns: ``.a.b``, escaped dots,
``[N]``, ``[*]``, ``['key']`` and filters ``[?(@.path=='value')]`` / ``!=``."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_FILTER = re.compile(r"^\?\(@((?:\.[^=!<>]+)+?)\s*(==|!=)\s*(.+)\)$")


@dataclass(frozen=True)
class _Step:
    kind: str          # field | index | all | filter
    key: str = ""
    index: int = 0
    filter_path: tuple[str, ...] = ()
    filter_op: str = "=="
    filter_value: Any = None


class JsonPathError(ValueError):
    pass


def _literal(text: str) -> Any:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    try:
        return json.loads(text)
    except ValueError as error:
        raise JsonPathError(f"bad literal {text!r}") from error


def _fields(text: str) -> list[str]:
    """Split ``.a.b\\.c`` into ["a", "b.c"] (a backslash escapes the next character)."""
    names: list[str] = []
    current: list[str] = []
    escaped = False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ".":
            if current:
                names.append("".join(current))
            current = []
        else:
            current.append(char)
    if current:
        names.append("".join(current))
    return names


def _bracket(content: str) -> _Step:
    if content == "*":
        return _Step("all")
    if content.lstrip("-").isdigit():
        return _Step("index", index=int(content))
    if len(content) >= 2 and content[0] == content[-1] and content[0] in "'\"":
        return _Step("field", key=content[1:-1])
    match = _FILTER.match(content)
    if match:
        return _Step("filter", filter_path=tuple(_fields(match[1])), filter_op=match[2],
                     filter_value=_literal(match[3]))
    raise JsonPathError(f"unsupported JSONPath bracket [{content}]")


def parse(expression: str) -> list[_Step]:
    text = expression.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    if not text.startswith(".") and not text.startswith("["):
        raise JsonPathError(f"a JSONPath must start with '.': {expression!r}")
    steps: list[_Step] = []
    position = 0
    while position < len(text):
        if text[position] == "[":
            end = text.find("]", position)
            while end != -1 and text.count("(", position, end) > text.count(")", position, end):
                end = text.find("]", end + 1)
            if end == -1:
                raise JsonPathError(f"unclosed bracket in {expression!r}")
            steps.append(_bracket(text[position + 1:end]))
            position = end + 1
            continue
        end = position
        while end < len(text) and text[end] != "[":
            end += 2 if text[end] == "\\" else 1
        steps.extend(_Step("field", key=name) for name in _fields(text[position:end]))
        position = end
    return steps


def _dig(node: Any, path: tuple[str, ...]) -> tuple[bool, Any]:
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return False, None
        node = node[key]
    return True, node


def _apply(step: _Step, node: Any) -> list[Any]:
    if step.kind == "field":
        return [node[step.key]] if isinstance(node, dict) and step.key in node else []
    if not isinstance(node, list):
        return []
    if step.kind == "all":
        return list(node)
    if step.kind == "index":
        return [node[step.index]] if -len(node) <= step.index < len(node) else []
    found: list[Any] = []
    for item in node:
        present, value = _dig(item, step.filter_path)
        if present and (value == step.filter_value) == (step.filter_op == "=="):
            found.append(item)
    return found


def find(steps: list[_Step], document: Any) -> list[Any]:
    nodes = [document]
    for step in steps:
        nodes = [result for node in nodes for result in _apply(step, node)]
    return nodes
