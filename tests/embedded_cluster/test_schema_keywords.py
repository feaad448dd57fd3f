"""Schema keywords and rule options the bundled CRDs use little or not at all, on a
synthetic CRD schema: each must behave as kube-apiserver's does."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from service.embedded_cluster.contracts import ResourceType, StatusError
from service.embedded_cluster.schema import SchemaAdmission
from service.embedded_cluster.schema.compiled import SchemaCompileError, compile_schema

SPEC: dict[str, Any] = {
    "type": "object",
    "properties": {
        "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
        "ports": {"type": "array", "uniqueItems": True, "minItems": 1, "items": {"type": "integer"}},
        "ratio": {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 1, "exclusiveMaximum": True},
        "labels": {"type": "object", "minProperties": 1, "maxProperties": 2,
                   "additionalProperties": {"type": "string"}},
        "closed": {"type": "object", "additionalProperties": False, "properties": {"a": {"type": "string"}}},
        "note": {"type": "string", "nullable": True},
        "count": {"type": "integer", "default": 3},
        "size": {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]},
        "word": {"type": "string", "not": {"enum": ["forbidden"]}},
        "template": {"type": "object", "x-kubernetes-embedded-resource": True,
                     "properties": {"spec": {"type": "object", "properties": {"x": {"type": "string"}}}}},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                 "properties": {"known": {"type": "integer"}}},
        "limits": {
            "type": "object",
            "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}},
            "x-kubernetes-validations": [
                {"rule": "self.max >= self.min", "messageExpression": "'max ' + string(self.max) + ' < min'",
                 "reason": "FieldValueForbidden", "fieldPath": ".max"},
                {"rule": "!has(oldSelf.min) || self.min >= oldSelf.min", "message": "min may only grow"},
                {"rule": "self.min != 13"},
            ],
        },
        "probe": {"type": "string",
                  "x-kubernetes-validations": [{"rule": "int(self) > 0", "message": "must be a positive number"}]},
        "items": {
            "type": "array",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            "items": {"type": "object", "required": ["name"],
                      "properties": {"name": {"type": "string"}, "value": {"type": "string"}},
                      "x-kubernetes-validations": [{"rule": "self.value == oldSelf.value",
                                                    "message": "value is immutable"}]},
        },
    },
}
SCHEMA: dict[str, Any] = {"type": "object", "properties": {
    "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}, "spec": SPEC}}
WIDGET = ResourceType(group="example.io", version="v1", kind="Widget", plural="widgets", singular="widget",
                      namespaced=True, schema=SCHEMA)
ADMISSION = SchemaAdmission()


def widget(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "ns"},
            "spec": spec}


def errors_of(obj: dict[str, Any], old: dict[str, Any] | None = None) -> dict[str, tuple[str, str]]:
    with pytest.raises(StatusError) as caught:
        ADMISSION.admit(WIDGET, obj, old)
    assert caught.value.code == 422
    return {cause.field: (cause.reason, cause.message) for cause in caught.value.causes}


def test_a_valid_widget_is_admitted_with_defaults_and_pruning() -> None:
    obj = widget(tags=["a", "b"], ports=[80, 443], ratio=0.5, labels={"k": "v"}, closed={"a": "x", "b": "y"},
                 note=None, size="10Gi", word="fine", free={"known": 1, "anything": {"deep": True}},
                 template={"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "junk": 1},
                           "spec": {"x": "y", "z": 1}, "other": 2})
    spec = ADMISSION.admit(WIDGET, obj, None)["spec"]
    assert spec["count"] == 3
    assert spec["note"] is None   # nullable: a null is kept
    assert spec["closed"] == {"a": "x"}   # additionalProperties: false prunes
    assert spec["free"] == {"known": 1, "anything": {"deep": True}}
    assert spec["template"] == {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"x": "y"}}


def test_value_keywords() -> None:
    errors = errors_of(widget(tags=["a", "a"], ports=[80, 80], ratio=1, labels={}, word="forbidden", size=1.5))
    assert errors["spec.tags[1]"] == ("FieldValueDuplicate", 'Duplicate value: "a"')
    assert errors["spec.ports"] == ("FieldValueInvalid", 'Invalid value: [80,80]: spec.ports in body shouldn\'t '
                                                         "contain duplicates")
    assert errors["spec.ratio"] == ("FieldValueInvalid", "Invalid value: 1: spec.ratio in body should be less than 1")
    assert errors["spec.labels"][1].endswith("spec.labels in body should have at least 1 properties")
    assert errors["spec.word"][1].endswith("spec.word in body must not validate the schema (not)")
    assert errors["spec.size"][0] == "FieldValueTypeInvalid"


def test_more_keywords() -> None:
    errors = errors_of(widget(ports=[], ratio=0, labels={"a": "1", "b": "2", "c": "3"}, count=None))
    assert errors["spec.ports"][1].endswith("spec.ports in body should have at least 1 items")
    assert errors["spec.ratio"][1].endswith("spec.ratio in body should be greater than 0")
    assert errors["spec.labels"] == ("FieldValueTooMany", "Too many: 3: must have at most 2 items")


def test_a_null_in_a_non_nullable_field_is_dropped_and_defaulted() -> None:
    assert ADMISSION.admit(WIDGET, widget(count=None), None)["spec"]["count"] == 3


def test_rule_reason_field_path_and_message_expression() -> None:
    errors = errors_of(widget(limits={"min": 5, "max": 2}))
    assert errors == {"spec.limits.max": ("FieldValueForbidden", "Forbidden: max 2 < min")}


def test_rule_without_message_reports_the_rule() -> None:
    errors = errors_of(widget(limits={"min": 13, "max": 20}))
    assert errors == {"spec.limits": ("FieldValueInvalid", 'Invalid value: "object": failed rule: self.min != 13')}


def test_a_rule_that_fails_to_evaluate_is_an_invalid_value() -> None:
    (reason, message), = errors_of(widget(probe="abc")).values()
    assert reason == "FieldValueInvalid"
    assert message.startswith('Invalid value: "string": ')
    assert message.endswith(" evaluating rule: must be a positive number")
    assert ADMISSION.admit(WIDGET, widget(probe="12"), None)["spec"]["probe"] == "12"


def test_transition_rule_with_has_old_self() -> None:
    stored = ADMISSION.admit(WIDGET, widget(limits={"min": 5, "max": 9}), None)
    grown = copy.deepcopy(stored)
    grown["spec"]["limits"]["min"] = 6
    ADMISSION.admit(WIDGET, grown, stored)
    shrunk = copy.deepcopy(stored)
    shrunk["spec"]["limits"]["min"] = 4
    assert errors_of(shrunk, stored) == {"spec.limits": ("FieldValueInvalid",
                                                         'Invalid value: "object": min may only grow')}


def test_list_map_items_correlate_with_old_items_by_key() -> None:
    stored = ADMISSION.admit(WIDGET, widget(items=[{"name": "a", "value": "1"}]), None)
    reordered = widget(items=[{"name": "b", "value": "2"}, {"name": "a", "value": "1"}])
    ADMISSION.admit(WIDGET, reordered, stored)   # "b" is new (no oldSelf), "a" unchanged
    changed = widget(items=[{"name": "b", "value": "2"}, {"name": "a", "value": "9"}])
    assert errors_of(changed, stored) == {"spec.items[1]": ("FieldValueInvalid",
                                                            'Invalid value: "object": value is immutable')}
    duplicate = widget(items=[{"name": "a", "value": "1"}, {"name": "a", "value": "2"}])
    assert errors_of(duplicate) == {"spec.items[1]": ("FieldValueDuplicate", 'Duplicate value: {"name":"a"}')}


def test_unknown_subresource_is_not_found() -> None:
    with pytest.raises(StatusError) as caught:
        ADMISSION.admit(WIDGET, widget(), None, subresource="scale")
    assert caught.value.code == 404


@pytest.mark.parametrize("schema", [
    {"type": "string", "pattern": "("},
    {"type": "object", "x-kubernetes-validations": [{"rule": "self.("}]},
    {"type": "object", "x-kubernetes-validations": [{"rule": "self.a", "reason": "Whatever"}]},
    {"type": "object", "x-kubernetes-validations": [{"message": "no rule"}]},
    {"type": "string", "minLength": "three"},
])
def test_a_broken_schema_is_refused_when_compiled(schema: dict[str, Any]) -> None:
    with pytest.raises(SchemaCompileError):
        compile_schema(schema)
