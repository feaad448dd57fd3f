"""OpenAPI v3 value validation and CEL rules, with kube-apiserver's messages.

``validate`` walks a value along its compiled schema and appends one ``FieldError``
per violation. ``validate_rules`` is the second pass (kube-apiserver runs CEL only when
the first found no type or enum error): the old object walks alongside the new one so
transition rules see ``oldSelf``, correlated through properties, map keys and
``x-kubernetes-list-type: map`` keys.
"""

from __future__ import annotations

import json
from typing import Any

from service.embedded_cluster.schema import field_errors as fe
from service.embedded_cluster.schema.cel_values import CelEvalError
from service.embedded_cluster.schema.compiled import MISSING, CompiledRule, SchemaNode
from service.embedded_cluster.schema.field_errors import FieldError
from service.embedded_cluster.schema.formats import format_ok

# A rule's run-time failure: CEL's own errors, and the Python errors a hostile value can
# still provoke inside a function (an unhashable map key, a timestamp out of range...).
RULE_FAILURES = (CelEvalError, ArithmeticError, LookupError, TypeError, ValueError, OSError)


def child_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _type_ok(node: SchemaNode, value: Any) -> bool:
    actual = json_type(value)
    if node.int_or_string:
        return actual in ("integer", "string")
    if not node.type:
        return True
    if node.type == "number":
        return actual in ("integer", "number")
    return actual == node.type


def validate(node: SchemaNode, value: Any, path: str, old: Any, errors: list[FieldError],
             *, skip: frozenset[str] = frozenset()) -> None:
    """Append the errors of ``value`` at ``path``; ``skip`` names properties not to descend into."""
    if value is None:
        if not node.nullable and (node.type or node.int_or_string):
            expected = "integer-or-string" if node.int_or_string else node.type
            errors.append(fe.type_invalid(path, "null", f'{path} in body must be of type {expected}: "null"'))
        return
    if not _type_ok(node, value):
        expected = "integer-or-string" if node.int_or_string else node.type
        actual = json_type(value)
        errors.append(fe.type_invalid(path, actual, f'{path} in body must be of type {expected}: "{actual}"'))
        return
    if isinstance(value, str):
        _validate_string(node, value, path, errors)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        _validate_number(node, value, path, errors)
    if node.enum is not None and not any(_json_equal(value, choice) for choice in node.enum):
        errors.append(fe.not_supported(path, value, list(node.enum)))
    if isinstance(value, dict):
        _validate_object(node, value, path, old, errors, skip)
    elif isinstance(value, list):
        _validate_array(node, value, path, old, errors)
    _validate_combinators(node, value, path, errors)


def _json_equal(left: Any, right: Any) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):
        return left is right
    return bool(left == right)


def _validate_string(node: SchemaNode, value: str, path: str, errors: list[FieldError]) -> None:
    if node.max_length is not None and len(value) > node.max_length:
        errors.append(fe.too_long(path, node.max_length))
    if node.min_length is not None and len(value) < node.min_length:
        errors.append(fe.invalid(path, value, f"{path} in body should be at least {node.min_length} chars long"))
    if node.pattern is not None and not node.pattern.matches(value):
        errors.append(fe.invalid(path, value, f"{path} in body should match '{node.pattern.source}'"))
    if node.format and not format_ok(node.format, value):
        errors.append(fe.invalid(path, value, f'{path} in body must be of type {node.format}: "{value}"'))


def _number_text(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def _validate_number(node: SchemaNode, value: float, path: str, errors: list[FieldError]) -> None:
    if node.minimum is not None:
        too_small = value <= node.minimum if node.exclusive_minimum else value < node.minimum
        if too_small:
            relation = "greater than" if node.exclusive_minimum else "greater than or equal to"
            errors.append(fe.invalid(path, value, f"{path} in body should be {relation} {_number_text(node.minimum)}"))
    if node.maximum is not None:
        too_big = value >= node.maximum if node.exclusive_maximum else value > node.maximum
        if too_big:
            relation = "less than" if node.exclusive_maximum else "less than or equal to"
            errors.append(fe.invalid(path, value, f"{path} in body should be {relation} {_number_text(node.maximum)}"))


def _validate_object(node: SchemaNode, value: dict[str, Any], path: str, old: Any, errors: list[FieldError],
                     skip: frozenset[str]) -> None:
    for name in node.required:
        if name not in value:
            errors.append(fe.required(child_path(path, name)))
    if node.max_properties is not None and len(value) > node.max_properties:
        errors.append(fe.too_many(path, len(value), node.max_properties))
    if node.min_properties is not None and len(value) < node.min_properties:
        errors.append(fe.invalid(path, "object", f"{path} in body should have at least {node.min_properties} "
                                                 "properties"))
    old_map = old if isinstance(old, dict) else {}
    for key, item in value.items():
        if key in skip:
            continue
        child = node.properties.get(key)
        if child is not None:
            validate(child, item, child_path(path, key), old_map.get(key, MISSING), errors)
        elif isinstance(node.additional, SchemaNode):
            validate(node.additional, item, f"{path}[{key}]", old_map.get(key, MISSING), errors)


def _list_key(item: Any, keys: tuple[str, ...]) -> str:
    return json.dumps([item.get(key) if isinstance(item, dict) else None for key in keys], sort_keys=True)


def _correlated_old_items(node: SchemaNode, old: Any) -> dict[str, Any]:
    if node.list_type == "map" and isinstance(old, list):
        return {_list_key(item, node.list_map_keys): item for item in old}
    return {}


def _validate_array(node: SchemaNode, value: list[Any], path: str, old: Any, errors: list[FieldError]) -> None:
    if node.max_items is not None and len(value) > node.max_items:
        errors.append(fe.too_many(path, len(value), node.max_items))
    if node.min_items is not None and len(value) < node.min_items:
        errors.append(fe.invalid(path, value, f"{path} in body should have at least {node.min_items} items"))
    if node.unique_items and len({json.dumps(item, sort_keys=True) for item in value}) != len(value):
        errors.append(fe.invalid(path, value, f"{path} in body shouldn't contain duplicates"))
    _check_list_type(node, value, path, errors)
    if node.items is None:
        return
    for position, item in enumerate(value):
        validate(node.items, item, f"{path}[{position}]", MISSING, errors)


def _check_list_type(node: SchemaNode, value: list[Any], path: str, errors: list[FieldError]) -> None:
    if node.list_type not in ("set", "map"):
        return
    seen: set[str] = set()
    for position, item in enumerate(value):
        if node.list_type == "set":
            key, shown = json.dumps(item, sort_keys=True), item
        else:
            key = _list_key(item, node.list_map_keys)
            shown = {name: item.get(name) for name in node.list_map_keys} if isinstance(item, dict) else item
        if key in seen:
            errors.append(fe.duplicate(f"{path}[{position}]", shown))
        seen.add(key)


def _passes(node: SchemaNode, value: Any, path: str) -> bool:
    scratch: list[FieldError] = []
    validate(node, value, path, MISSING, scratch)
    return not scratch


def _validate_combinators(node: SchemaNode, value: Any, path: str, errors: list[FieldError]) -> None:
    for branch in node.all_of:
        validate(branch, value, path, MISSING, errors)
    if node.any_of and not any(_passes(branch, value, path) for branch in node.any_of):
        errors.append(fe.invalid(path, value, f"{path} in body must validate at least one schema (anyOf)"))
    if node.one_of:
        matching = sum(_passes(branch, value, path) for branch in node.one_of)
        if matching != 1:
            errors.append(fe.invalid(path, value, f"{path} in body must validate one and only one schema (oneOf)"))
    if node.not_ is not None and _passes(node.not_, value, path):
        errors.append(fe.invalid(path, value, f"{path} in body must not validate the schema (not)"))


def _rule_path(path: str, field_path: str) -> str:
    if not field_path:
        return path
    if field_path.startswith("["):
        return f"{path}{field_path}"
    return child_path(path, field_path.lstrip("."))


def _rule_message(rule: CompiledRule, activation: dict[str, Any]) -> str:
    if rule.message_expression is not None:
        try:
            text = rule.message_expression(activation)
        except RULE_FAILURES:
            text = None
        if isinstance(text, str) and text.strip() and "\n" not in text:
            return text
    return rule.message or f"failed rule: {rule.rule}"


def check_rules(node: SchemaNode, value: Any, path: str, old: Any, errors: list[FieldError]) -> None:
    """Evaluate the node's x-kubernetes-validations; transition rules need an old value."""
    activation = {"self": value, "oldSelf": None if old is MISSING else old}
    label = node.type   # kube-apiserver (before 1.35) shows the schema type, not the value
    for rule in node.rules:
        if rule.transition and old is MISSING:
            continue
        try:
            outcome = rule.evaluate(activation)
        except RULE_FAILURES as exc:
            errors.append(fe.invalid(path, label, f"{exc} evaluating rule: {rule.message or rule.rule}"))
            continue
        if outcome is not True:
            if not isinstance(outcome, bool):
                errors.append(fe.invalid(path, label, f"rule did not evaluate to a bool: {rule.rule}"))
                continue
            errors.append(fe.rule_error(rule.reason, _rule_path(path, rule.field_path), label,
                                        _rule_message(rule, activation)))


def validate_rules(node: SchemaNode, value: Any, path: str, old: Any, errors: list[FieldError],
                   *, skip: frozenset[str] = frozenset()) -> None:
    """The CEL pass: each node's rules, then its children's (subtrees without rules are skipped)."""
    if not node.has_rules or value is None:
        return
    if node.rules:
        check_rules(node, value, path, old, errors)
    if isinstance(value, dict):
        old_map = old if isinstance(old, dict) else {}
        for key, item in value.items():
            if key in skip:
                continue
            child = node.properties.get(key)
            if child is not None:
                validate_rules(child, item, child_path(path, key), old_map.get(key, MISSING), errors)
            elif isinstance(node.additional, SchemaNode):
                validate_rules(node.additional, item, f"{path}[{key}]", old_map.get(key, MISSING), errors)
    elif isinstance(value, list) and node.items is not None:
        old_by_key = _correlated_old_items(node, old)
        for position, item in enumerate(value):
            old_item = old_by_key.get(_list_key(item, node.list_map_keys), MISSING) if old_by_key else MISSING
            validate_rules(node.items, item, f"{path}[{position}]", old_item, errors)
