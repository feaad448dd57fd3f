"""The CEL compiler: every rule of the bundled CRDs compiles, and CEL semantics hold."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from service.embedded_cluster.schema.cel import CelCompileError, compile_expression, references, unescape_field
from service.embedded_cluster.schema.cel_values import CelEvalError
from service.embedded_cluster.schema.compiled import compiled
from service.embedded_cluster.schema.loader import load_crds, load_resource_types


def _rules(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield from node.get("x-kubernetes-validations") or ()
        for value in node.values():
            yield from _rules(value)
    elif isinstance(node, list):
        for item in node:
            yield from _rules(item)


START_RULE = "self.type == 'Start' ? !has(self.force) || !self.force : true"
ALL_RULES = sorted({rule["rule"] for crd in load_crds() for rule in _rules(crd)})


def evaluate(source: str, **variables: Any) -> Any:
    return compile_expression(source, frozenset(variables) | {"self", "oldSelf"})(variables)


def test_the_crds_carry_the_rules_this_suite_expects() -> None:
    assert len(ALL_RULES) >= 25
    assert "self == oldSelf" in ALL_RULES


@pytest.mark.parametrize("rule", ALL_RULES)
def test_every_crd_rule_compiles(rule: str) -> None:
    assert callable(compile_expression(rule))


def test_every_bundled_schema_compiles_with_its_rules() -> None:
    nodes = [compiled(rtype.schema) for rtype in load_resource_types() if rtype.schema is not None]
    assert len(nodes) == len(load_resource_types())
    assert sum(node.has_rules for node in nodes) >= 6


@pytest.mark.parametrize(("source", "variables", "expected"), [
    ("self == oldSelf", {"self": {"a": [1, 2]}, "oldSelf": {"a": [1, 2]}}, True),
    ("self == oldSelf", {"self": {"a": [1, 2]}, "oldSelf": {"a": [1, 3]}}, False),
    ("self == oldSelf", {"self": {"a": 1}, "oldSelf": {"a": 1, "b": 2}}, False),
    (START_RULE, {"self": {"type": "Start", "force": True}}, False),
    (START_RULE, {"self": {"type": "Start"}}, True),
    (START_RULE, {"self": {"type": "Stop", "force": True}}, True),
    ("type(self) == int ? self >= 1 && self <= 100 : self == 'Auto'", {"self": 5}, True),
    ("type(self) == int ? self >= 1 && self <= 100 : self == 'Auto'", {"self": 500}, False),
    ("type(self) == int ? self >= 1 && self <= 100 : self == 'Auto'", {"self": "Auto"}, True),
    ("type(self) == int ? self >= 1 && self <= 100 : self == 'Auto'", {"self": "50"}, False),
    ("self.all(nr, has(nr.to) && size(nr.to) >= 1 && size(nr.to) <= 59)", {"self": [{"to": "x"}]}, True),
    ("self.all(nr, has(nr.to) && size(nr.to) >= 1 && size(nr.to) <= 59)", {"self": [{"to": "x" * 60}]}, False),
    ("self.all(nr, has(nr.to))", {"self": []}, True),
    ("self.exists(x, x > 2) && !self.exists(x, x > 5) && self.exists_one(x, x == 1)", {"self": [1, 2, 3]}, True),
    ("self.map(x, x * 2).filter(y, y > 2) == [4, 6]", {"self": [1, 2, 3]}, True),
    ("self.map(x, x > 1, x * 10) == [20, 30]", {"self": [1, 2, 3]}, True),
    ("self.all(k, k.startsWith('a'))", {"self": {"ab": 1, "ac": 2}}, True),
    ("'a' in self && !('z' in self) && 2 in [1, 2]", {"self": {"a": 1}}, True),
    ("self.cpu.coreFraction.endsWith('%') && int(self.cpu.coreFraction.replace('%', '')) == 50",
     {"self": {"cpu": {"coreFraction": "50%"}}}, True),
    ("has(self.__namespace__) && size(self.__namespace__) > 0", {"self": {"namespace": "ns"}}, True),
    ("has(self.__namespace__)", {"self": {"kind": "VirtualDisk"}}, False),
    ("self.lowerAscii() == 'abc' && self.upperAscii() == 'ABC' && self.contains('b') && self.matches('^A.C$')",
     {"self": "AbC"}, True),
    ("self.split(',') == ['a', 'b'] && ['a', 'b'].join('-') == 'a-b' && self.indexOf('b') == 2",
     {"self": "a,b"}, True),
    ("self.substring(1, 3) == 'bc' && self.charAt(0) == 'a' && '  x '.trim() == 'x'", {"self": "abcd"}, True),
    ("self.find('[0-9]+') == '42' && self.findAll('[a-z]') == ['a', 'b']", {"self": "a42b"}, True),
    ("[3, 1, 2].min() == 1 && [3, 1, 2].max() == 3 && [1, 2].sum() == 3 && [1, 2, 2].isSorted()", {}, True),
    ("7 / -2 == -3 && 7 % -2 == 1 && -7 % 2 == -1 && 1.5 * 2.0 == 3.0 && 3u + 4u == 7u", {}, True),
    ("1 == 1.0 && 1 != 'a' && [1] != [1, 2] && {'a': 1} == {'a': 1} && null == null", {}, True),
    ("b'ab' == bytes('ab') && size(b'ab') == 2 && string(12) == '12' && double('1.5') == 1.5", {}, True),
    ('"x\\n" != \'x\' && r"\\d" == "\\\\d" && \'\'\'multi\nline\'\'\'.contains("\\n")', {}, True),
    ("duration('1m30s') == duration('90s') && timestamp('2024-01-01T00:00:00Z') < timestamp('2025-01-01T00:00:00Z')",
     {}, True),
    ("false && self.missing", {"self": {}}, False),
    ("self.missing && false", {"self": {}}, False),
    ("self.missing || true", {"self": {}}, True),
    ("self.exists(x, x.a == 1)", {"self": [{}, {"a": 1}]}, True),
    ("self.all(x, x.a == 1)", {"self": [{}, {"a": 2}]}, False),
    ("b'\\xff' != b'\\xfe' && '\\x41\\101\\u00e9' == 'AA\u00e9'", {}, True),
])
def test_semantics(source: str, variables: dict[str, Any], expected: Any) -> None:
    result = evaluate(source, **variables)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(("source", "variables"), [
    ("self.missing", {"self": {}}),
    ("self.a > 1", {"self": {"a": "x"}}),
    ("self[5]", {"self": [1]}),
    ("1 / 0", {}),
    ("9223372036854775807 + 1", {}),
    ("int('x')", {}),
    ("self.type == 'A' ? true : false", {"self": {}}),
    ("self.missing && true", {"self": {}}),
    ("size(1)", {}),
    ("self.all(x, x.a)", {"self": [{"a": True}, {}]}),
    ("[1, self.missing].exists(x, x == 1)", {"self": {}}),
])
def test_runtime_errors_raise(source: str, variables: dict[str, Any]) -> None:
    with pytest.raises(CelEvalError):
        evaluate(source, **variables)


@pytest.mark.parametrize("source", ["self ==", "unknownVar == 1", "self.foo(", "noSuchFunction(self)", "has(self)",
                                    "self.all(1, true)"])
def test_bad_rules_do_not_compile(source: str) -> None:
    with pytest.raises(CelCompileError):
        compile_expression(source)


def test_transition_rules_are_recognised_by_their_old_self_reference() -> None:
    assert references("self == oldSelf", "oldSelf")
    assert not references("self.oldSelf == 1", "oldSelf")
    assert not references("self.type == 'Start'", "oldSelf")


def test_escaped_property_names() -> None:
    assert unescape_field("__namespace__") == "namespace"
    assert unescape_field("a__dash__b__dot__c__slash__d__underscores__e") == "a-b.c/d__e"
    assert unescape_field("plain") == "plain"


def test_compilation_is_cached() -> None:
    assert compile_expression("self == oldSelf") is compile_expression("self == oldSelf")
