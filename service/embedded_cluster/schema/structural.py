"""Structural pruning and defaulting, as apiextensions-apiserver does them on decode.

Unknown fields are dropped wherever the schema does not cover them (unless
``x-kubernetes-preserve-unknown-fields``); a null in a non-nullable field is dropped
before defaulting; a default is applied only where its parent object exists.
"""

from __future__ import annotations

from typing import Any

from service.embedded_cluster.schema.compiled import MISSING, SchemaNode

# metav1.ObjectMeta fields a client may send (the rest of ObjectMeta is pruned away).
OBJECT_META_FIELDS = frozenset({
    "name", "generateName", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
    "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations", "ownerReferences",
    "finalizers", "managedFields", "selfLink",
})
TYPE_META_FIELDS = frozenset({"apiVersion", "kind"})


def json_copy(value: Any) -> Any:
    """A deep copy of a JSON value (several times faster than copy.deepcopy)."""
    if isinstance(value, dict):
        return {key: json_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_copy(item) for item in value]
    return value


def prune_object_meta(meta: Any) -> Any:
    if not isinstance(meta, dict):
        return meta
    for key in [key for key in meta if key not in OBJECT_META_FIELDS]:
        del meta[key]
    return meta


def normalize(node: SchemaNode, value: Any) -> Any:
    """Prune and default ``value`` (mutated in place; the result is what to store)."""
    if isinstance(value, dict):
        _normalize_object(node, value)
    elif isinstance(value, list) and node.items is not None:
        for position, item in enumerate(value):
            value[position] = normalize(node.items, item)
    return value


def _normalize_object(node: SchemaNode, value: dict[str, Any]) -> None:
    for key in list(value):
        child = _child_schema(node, key)
        if child is None:
            if not _keeps_unknown(node, key):
                del value[key]
            elif node.embedded_resource and key == "metadata":
                prune_object_meta(value[key])
            continue
        item = value[key]
        if item is None and not child.nullable:
            del value[key]
        else:
            value[key] = normalize(child, item)
    for key, child in node.properties.items():
        if key not in value and child.default is not MISSING:
            value[key] = normalize(child, json_copy(child.default))


def _child_schema(node: SchemaNode, key: str) -> SchemaNode | None:
    child = node.properties.get(key)
    if child is not None:
        return child
    return node.additional if isinstance(node.additional, SchemaNode) else None


def _keeps_unknown(node: SchemaNode, key: str) -> bool:
    if node.preserve_unknown or node.additional is True:
        return True
    return node.embedded_resource and (key in TYPE_META_FIELDS or key == "metadata")
