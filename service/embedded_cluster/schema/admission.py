"""``contracts.Admission`` over the CRD schemas: what apiextensions-apiserver does to a
custom resource on every write (decode, prune, default, validate, CEL)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from service.embedded_cluster.contracts import Obj, ResourceType, StatusError
from service.embedded_cluster.schema import field_errors as fe
from service.embedded_cluster.schema.compiled import MISSING, SchemaNode, compiled
from service.embedded_cluster.schema.field_errors import FieldError
from service.embedded_cluster.schema.metadata import validate_object_meta
from service.embedded_cluster.schema.structural import json_copy, normalize, prune_object_meta
from service.embedded_cluster.schema.validation import validate, validate_rules

# A type or enum error makes CEL unsafe to run; kube-apiserver then says so instead.
_BLOCKING = frozenset({fe.TYPE_INVALID, fe.NOT_SUPPORTED})
RULES_NOT_CHECKED = fe.invalid("<nil>", "null", "some validation rules were not checked because the object was "
                                             "invalid; correct the existing errors to complete validation")
_ROOT_SKIP = frozenset({"metadata"})


class SchemaAdmission:
    """Prunes, defaults and validates custom resources against their ResourceType's schema.

    Stateless and thread-safe; a schema is compiled (patterns, CEL) on its first use."""

    def prepare(self, types: Iterable[ResourceType]) -> None:
        """Compile the types' schemas now (about a second, once per process: building the
        CEL parser dominates) rather than on the first write; a broken schema raises
        SchemaCompileError here."""
        for rtype in types:
            if rtype.schema is not None:
                compiled(rtype.schema)

    def admit(self, rtype: ResourceType, obj: Obj, old: Obj | None, *, subresource: str = "") -> Obj:
        if not isinstance(obj, dict):
            raise StatusError(400, "BadRequest", "the request body must be a JSON object")
        try:
            return self._admit(rtype, obj, old, subresource)
        except RecursionError as exc:   # hostile nesting; Python's stack is the limit
            raise StatusError(400, "BadRequest", "the object is nested too deeply") from exc

    def _admit(self, rtype: ResourceType, obj: Obj, old: Obj | None, subresource: str) -> Obj:
        result: Obj = json_copy(obj)
        _check_type_meta(rtype, result)
        if rtype.schema is None:
            return result
        root = compiled(rtype.schema)
        _normalize_root(root, result)
        errors = validate_object_meta(result.get("metadata"), namespaced=rtype.namespaced)
        if subresource == "status":
            errors.extend(_validate_status(root, result, old))
        elif subresource:
            raise StatusError(404, "NotFound", f"the server could not find the requested resource ({subresource})")
        else:
            errors.extend(_validate_whole(root, result, old))
        if errors:
            meta = result.get("metadata")
            meta = meta if isinstance(meta, dict) else {}
            name = str(meta.get("name") or meta.get("generateName") or "")
            raise fe.invalid_status(rtype.kind, rtype.group, name, errors)
        return result


def _check_type_meta(rtype: ResourceType, obj: Obj) -> None:
    """apiVersion/kind must name this type (a missing one is filled in, as a typed client would)."""
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if api_version and api_version != rtype.api_version:
        raise StatusError(400, "BadRequest", f"the API version in the data ({api_version}) does not match the "
                                             f"expected API version ({rtype.api_version})")
    if kind and kind != rtype.kind:
        raise StatusError(400, "BadRequest", f"the kind in the data ({kind}) does not match the expected kind "
                                             f"({rtype.kind})")
    obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind


def _normalize_root(root: SchemaNode, obj: Obj) -> None:
    """Prune and default everything but ObjectMeta and TypeMeta, which the API server owns."""
    kept: Obj = {key: obj.pop(key) for key in ("apiVersion", "kind", "metadata") if key in obj}
    normalize(root, obj)
    content = dict(obj)
    obj.clear()
    obj.update(kept)
    obj.update(content)
    prune_object_meta(obj.get("metadata"))


def _old_value(old: Obj | None, key: str | None = None) -> Any:
    if old is None:
        return MISSING
    return old if key is None else old.get(key, MISSING)


def _check(node: SchemaNode, value: Any, path: str, old: Any, skip: frozenset[str]) -> list[FieldError]:
    errors: list[FieldError] = []
    validate(node, value, path, old, errors, skip=skip)
    if node.has_rules:
        if any(error.reason in _BLOCKING for error in errors):
            errors.append(RULES_NOT_CHECKED)
        else:
            validate_rules(node, value, path, old, errors, skip=skip)
    return errors


def _validate_whole(root: SchemaNode, obj: Obj, old: Obj | None) -> list[FieldError]:
    return _check(root, obj, "", _old_value(old), _ROOT_SKIP)


def _validate_status(root: SchemaNode, obj: Obj, old: Obj | None) -> list[FieldError]:
    """The status subresource: only ``status`` is the caller's to change, so only it is checked."""
    node = root.properties.get("status")
    if node is None or "status" not in obj:
        return []
    return _check(node, obj["status"], "status", _old_value(old, "status"), frozenset())
