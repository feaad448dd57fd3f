"""A CRD's openAPIV3Schema compiled once into a tree of nodes: patterns and CEL rules
are compiled here, so admission only walks the tree."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from service.embedded_cluster.contracts import Obj
from service.embedded_cluster.schema import cel
from service.embedded_cluster.schema.cel_values import Evaluator
from service.embedded_cluster.schema.field_errors import INVALID, RULE_REASONS
from service.embedded_cluster.schema.regex import Regex, RegexError, regex

MISSING: Any = object()   # "no default" / "no old value": distinct from a null value


class SchemaCompileError(ValueError):
    """The schema itself is not usable (bad pattern, CEL rule that does not compile)."""


@dataclass(frozen=True)
class CompiledRule:
    rule: str
    evaluate: Evaluator
    message: str
    message_expression: Evaluator | None
    reason: str
    field_path: str
    transition: bool   # mentions oldSelf: only checked on update, with an old value


@dataclass
class SchemaNode:
    type: str = ""
    nullable: bool = False
    int_or_string: bool = False
    preserve_unknown: bool = False
    embedded_resource: bool = False
    properties: dict[str, SchemaNode] = field(default_factory=dict)
    additional: SchemaNode | bool | None = None   # additionalProperties: a schema, true/false, or absent
    items: SchemaNode | None = None
    default: Any = MISSING
    required: tuple[str, ...] = ()
    enum: tuple[Any, ...] | None = None
    pattern: Regex | None = None
    format: str = ""
    min_length: int | None = None
    max_length: int | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    min_items: int | None = None
    max_items: int | None = None
    unique_items: bool = False
    min_properties: int | None = None
    max_properties: int | None = None
    all_of: tuple[SchemaNode, ...] = ()
    any_of: tuple[SchemaNode, ...] = ()
    one_of: tuple[SchemaNode, ...] = ()
    not_: SchemaNode | None = None
    list_type: str = ""
    list_map_keys: tuple[str, ...] = ()
    rules: tuple[CompiledRule, ...] = ()
    has_rules: bool = False   # this node or a descendant has rules: the CEL pass descends


def _compile_rule(raw: Obj, where: str) -> CompiledRule:
    source = raw.get("rule")
    if not isinstance(source, str) or not source.strip():
        raise SchemaCompileError(f"{where}: x-kubernetes-validations entry without a rule")
    try:
        evaluate = cel.compile_expression(source)
        message_source = raw.get("messageExpression")
        message_expression = cel.compile_expression(message_source) if isinstance(message_source, str) else None
    except cel.CelCompileError as exc:
        raise SchemaCompileError(f"{where}: {exc}") from exc
    reason = raw.get("reason") or INVALID
    if reason not in RULE_REASONS:
        raise SchemaCompileError(f"{where}: unsupported reason {reason!r}")
    return CompiledRule(rule=source, evaluate=evaluate, message=str(raw.get("message") or ""),
                        message_expression=message_expression, reason=reason,
                        field_path=str(raw.get("fieldPath") or ""), transition=cel.references(source, "oldSelf"))


def _number(raw: Obj, key: str) -> float | None:
    value = raw.get(key)
    return None if value is None or isinstance(value, bool) else float(value)


def _count(raw: Obj, key: str) -> int | None:
    value = raw.get(key)
    return None if value is None or isinstance(value, bool) else int(value)


def compile_schema(raw: Obj, where: str = "") -> SchemaNode:
    """Compile one schema object (recursively)."""
    if not isinstance(raw, dict):
        raise SchemaCompileError(f"{where or '<root>'}: a schema must be an object")
    pattern_source = raw.get("pattern") or ""
    try:
        pattern = regex(pattern_source) if pattern_source else None
    except RegexError as exc:
        raise SchemaCompileError(f"{where}: bad pattern: {exc}") from exc
    try:
        node = _compile_node(raw, where, pattern)
    except (TypeError, ValueError) as exc:   # e.g. a non-numeric minLength
        if isinstance(exc, SchemaCompileError):
            raise
        raise SchemaCompileError(f"{where or '<root>'}: {exc}") from exc
    children = [*node.properties.values(), node.items, node.additional]
    node.has_rules = bool(node.rules) or any(isinstance(c, SchemaNode) and c.has_rules for c in children)
    return node


def _compile_node(raw: Obj, where: str, pattern: Regex | None) -> SchemaNode:
    additional_raw = raw.get("additionalProperties")
    additional: SchemaNode | bool | None
    if isinstance(additional_raw, dict):
        additional = compile_schema(additional_raw, f"{where}.additionalProperties")
    else:
        additional = additional_raw if isinstance(additional_raw, bool) else None
    items_raw = raw.get("items")
    exclusive_min, exclusive_max = raw.get("exclusiveMinimum"), raw.get("exclusiveMaximum")
    return SchemaNode(
        type=str(raw.get("type") or ""),
        nullable=bool(raw.get("nullable")),
        int_or_string=bool(raw.get("x-kubernetes-int-or-string")),
        preserve_unknown=bool(raw.get("x-kubernetes-preserve-unknown-fields")),
        embedded_resource=bool(raw.get("x-kubernetes-embedded-resource")),
        properties={name: compile_schema(child, f"{where}.{name}")
                    for name, child in (raw.get("properties") or {}).items()},
        additional=additional,
        items=compile_schema(items_raw, f"{where}[*]") if isinstance(items_raw, dict) else None,
        default=raw.get("default", MISSING),
        required=tuple(raw.get("required") or ()),
        enum=tuple(raw["enum"]) if isinstance(raw.get("enum"), list) else None,
        pattern=pattern,
        format=str(raw.get("format") or ""),
        min_length=_count(raw, "minLength"),
        max_length=_count(raw, "maxLength"),
        minimum=_number(raw, "minimum"),
        maximum=_number(raw, "maximum"),
        exclusive_minimum=exclusive_min is True,
        exclusive_maximum=exclusive_max is True,
        min_items=_count(raw, "minItems"),
        max_items=_count(raw, "maxItems"),
        unique_items=bool(raw.get("uniqueItems")),
        min_properties=_count(raw, "minProperties"),
        max_properties=_count(raw, "maxProperties"),
        all_of=tuple(compile_schema(s, f"{where}.allOf") for s in raw.get("allOf") or ()),
        any_of=tuple(compile_schema(s, f"{where}.anyOf") for s in raw.get("anyOf") or ()),
        one_of=tuple(compile_schema(s, f"{where}.oneOf") for s in raw.get("oneOf") or ()),
        not_=compile_schema(raw["not"], f"{where}.not") if isinstance(raw.get("not"), dict) else None,
        list_type=str(raw.get("x-kubernetes-list-type") or ""),
        list_map_keys=tuple(raw.get("x-kubernetes-list-map-keys") or ()),
        rules=tuple(_compile_rule(rule, where) for rule in raw.get("x-kubernetes-validations") or ()),
    )


_cache: dict[int, tuple[Obj, SchemaNode]] = {}
_cache_lock = threading.Lock()


def compiled(schema: Obj) -> SchemaNode:
    """The compiled tree of a schema object, compiled on first use. Keyed by identity (the
    ResourceTypes hold their schema for the process's life); the entry keeps the schema
    alive so an id is never reused for another one."""
    entry = _cache.get(id(schema))
    if entry is not None and entry[0] is schema:
        return entry[1]
    node = compile_schema(schema)
    with _cache_lock:
        _cache[id(schema)] = (schema, node)
    return node
