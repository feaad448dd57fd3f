"""A CEL compiler for CRD validation rules.

celpy (cel-python) parses the expression; its tree is then compiled here into nested
Python closures that evaluate over plain JSON values. celpy's own runners are not used:
its interpreter costs about a millisecond per rule and its transpiler gets ``false &&
<error>`` wrong, while admission evaluates every rule of a schema on each write.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import lark
from celpy.celparser import CELParser

from service.embedded_cluster.schema import cel_values as values
from service.embedded_cluster.schema.cel_functions import FUNCTIONS
from service.embedded_cluster.schema.cel_macros import MACRO_BUILDERS
from service.embedded_cluster.schema.cel_values import Activation, CelEvalError, Evaluator, Uint

ParseTree: TypeAlias = "lark.Tree[Any]"

MACROS = frozenset(MACRO_BUILDERS)
# Kubernetes escapes object property names that CEL cannot spell (apiextensions CEL).
_RESERVED = frozenset({"true", "false", "null", "in", "as", "break", "const", "continue", "else", "for",
                       "function", "if", "import", "let", "loop", "package", "namespace", "return", "var",
                       "void", "while"})
_ESCAPES = (("__underscores__", "__"), ("__dot__", "."), ("__dash__", "-"), ("__slash__", "/"))
_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "addition_add": values.add, "addition_sub": values.subtract,
    "multiplication_mul": values.multiply, "multiplication_div": values.divide, "multiplication_mod": values.modulo,
    "relation_eq": values.equals, "relation_ne": lambda a, b: not values.equals(a, b),
    "relation_lt": lambda a, b: values.compare(a, b) < 0, "relation_le": lambda a, b: values.compare(a, b) <= 0,
    "relation_gt": lambda a, b: values.compare(a, b) > 0, "relation_ge": lambda a, b: values.compare(a, b) >= 0,
    "relation_in": lambda item, container: values.contains(container, item),
}
_PASS_THROUGH = frozenset({"expr", "conditionalor", "conditionaland", "relation", "addition", "multiplication",
                           "unary", "member", "primary", "paren_expr"})


_ESCAPE = re.compile(r"""\\([abfnrtv"'`?\\]|[0-7]{3}|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8})|.""", re.DOTALL)
_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


class CelCompileError(Exception):
    """The rule does not parse, or names something that does not exist."""


def unescape_field(name: str) -> str:
    if name.startswith("__") and name.endswith("__") and name[2:-2] in _RESERVED:
        return name[2:-2]
    for escaped, plain in _ESCAPES:
        name = name.replace(escaped, plain)
    return name


@functools.lru_cache(maxsize=1)
def _parser() -> CELParser:
    return CELParser()


@functools.lru_cache(maxsize=2048)
def compile_expression(source: str, variables: frozenset[str] = frozenset({"self", "oldSelf"})) -> Evaluator:
    """Compile ``source`` once; the result maps an activation (variable values) to a value
    and raises CelEvalError at run time."""
    try:
        tree = _parser().parse(source)
    except Exception as exc:   # celpy raises lark errors of several classes
        raise CelCompileError(f"cannot parse {source!r}: {exc}") from exc
    return _Compiler(variables).compile(tree)


def references(source: str, name: str) -> bool:
    """Whether ``source`` mentions the variable ``name`` (``oldSelf`` makes a transition rule)."""
    tree = _parser().parse(source)
    return any(node.data == "ident" and str(node.children[0]) == name for node in tree.iter_subtrees())


def _children(tree: ParseTree) -> list[Any]:
    return [child for child in tree.children if child is not None]


def _plain_ident(tree: Any) -> str | None:
    """The identifier an expression consists of, if it is nothing else."""
    while isinstance(tree, lark.Tree):
        children = _children(tree)
        if tree.data == "ident":
            return str(children[0])
        if tree.data not in _PASS_THROUGH or len(children) != 1:
            return None
        tree = children[0]
    return None


def _truthy_and(left: Evaluator, right: Evaluator) -> Evaluator:
    def evaluate(env: Activation) -> bool:
        try:
            if not values.truthy(left(env)):
                return False
        except CelEvalError:
            if values.truthy(right(env)) is False:   # CEL: false && error == false
                return False
            raise
        return values.truthy(right(env))
    return evaluate


def _truthy_or(left: Evaluator, right: Evaluator) -> Evaluator:
    def evaluate(env: Activation) -> bool:
        try:
            if values.truthy(left(env)):
                return True
        except CelEvalError:
            if values.truthy(right(env)):   # CEL: true || error == true
                return True
            raise
        return values.truthy(right(env))
    return evaluate


class _Compiler:
    def __init__(self, variables: frozenset[str]) -> None:
        self.variables = variables

    def compile(self, tree: Any) -> Evaluator:
        if not isinstance(tree, lark.Tree):
            raise CelCompileError(f"unexpected token {tree!r}")
        method: Callable[[ParseTree], Evaluator] | None = getattr(self, f"_{tree.data}", None)
        if method is None:
            raise CelCompileError(f"unsupported CEL construct {tree.data}")
        return method(tree)

    def _single(self, tree: ParseTree) -> Evaluator:
        children = _children(tree)
        if len(children) != 1:
            raise CelCompileError(f"malformed {tree.data}")
        return self.compile(children[0])

    _member = _single
    _primary = _single
    _paren_expr = _single

    def _expr(self, tree: ParseTree) -> Evaluator:
        children = _children(tree)
        if len(children) == 1:
            return self.compile(children[0])
        condition, if_true, if_false = (self.compile(child) for child in children)

        def ternary(env: Activation) -> Any:
            return if_true(env) if values.truthy(condition(env)) else if_false(env)
        return ternary

    def _conditionalor(self, tree: ParseTree) -> Evaluator:
        children = _children(tree)
        if len(children) == 1:
            return self.compile(children[0])
        return _truthy_or(self.compile(children[0]), self.compile(children[1]))

    def _conditionaland(self, tree: ParseTree) -> Evaluator:
        children = _children(tree)
        if len(children) == 1:
            return self.compile(children[0])
        return _truthy_and(self.compile(children[0]), self.compile(children[1]))

    def _binary(self, tree: ParseTree) -> Evaluator:
        children = _children(tree)
        if len(children) == 1:
            return self.compile(children[0])
        operator_tree, right_tree = children
        operation = _BINARY[operator_tree.data]
        left, right = self.compile(_children(operator_tree)[0]), self.compile(right_tree)
        return lambda env: operation(left(env), right(env))

    _relation = _binary
    _addition = _binary
    _multiplication = _binary

    def _unary(self, tree: ParseTree) -> Evaluator:
        children = _children(tree)
        if len(children) == 1:
            return self.compile(children[0])
        operator_tree, operand_tree = children
        operand = self.compile(operand_tree)
        if operator_tree.data == "unary_not":
            return lambda env: not values.truthy(operand(env))
        return lambda env: values.negate(operand(env))

    def _member_dot(self, tree: ParseTree) -> Evaluator:
        target_tree, name = _children(tree)
        target, field = self.compile(target_tree), unescape_field(str(name))
        return lambda env: values.select(target(env), field)

    def _member_index(self, tree: ParseTree) -> Evaluator:
        target_tree, key_tree = _children(tree)
        target, key = self.compile(target_tree), self.compile(key_tree)
        return lambda env: values.index(target(env), key(env))

    def _member_dot_arg(self, tree: ParseTree) -> Evaluator:
        children = _children(tree)
        target_tree, name = children[0], str(children[1])
        arguments = _children(children[2]) if len(children) > 2 else []
        if name in MACROS:
            return self._macro(name, self.compile(target_tree), arguments)
        target = self.compile(target_tree)
        return self._call(name, [target, *(self.compile(argument) for argument in arguments)])

    def _ident_arg(self, tree: ParseTree) -> Evaluator:
        children = _children(tree)
        name = str(children[0])
        arguments = _children(children[1]) if len(children) > 1 else []
        if name == "has":
            return self._has(arguments)
        return self._call(name, [self.compile(argument) for argument in arguments])

    _dot_ident_arg = _ident_arg

    def _ident(self, tree: ParseTree) -> Evaluator:
        name = str(_children(tree)[0])
        if name in self.variables:
            return lambda env: env[name]
        if name in values.TYPES:
            constant = values.TYPES[name]
            return lambda env: constant
        raise CelCompileError(f"undeclared reference to {name!r}")

    _dot_ident = _ident

    def _literal(self, tree: ParseTree) -> Evaluator:
        token = _children(tree)[0]
        constant = _literal_value(token)
        return lambda env: constant

    def _list_lit(self, tree: ParseTree) -> Evaluator:
        children = _children(tree)
        items = [self.compile(item) for item in _children(children[0])] if children else []
        return lambda env: [item(env) for item in items]

    def _map_lit(self, tree: ParseTree) -> Evaluator:
        children = _children(tree)
        flat = [self.compile(item) for item in _children(children[0])] if children else []
        pairs = list(zip(flat[::2], flat[1::2], strict=True))
        return lambda env: {key(env): value(env) for key, value in pairs}

    def _has(self, arguments: Sequence[Any]) -> Evaluator:
        selection = _select_tree(arguments[0]) if len(arguments) == 1 else None
        if selection is None:
            raise CelCompileError("has() needs a field selection such as has(self.field)")
        target_tree, name = _children(selection)
        target, field = self.compile(target_tree), unescape_field(str(name))
        return lambda env: values.has_field(target(env), field)

    def _call(self, name: str, arguments: list[Evaluator]) -> Evaluator:
        function = FUNCTIONS.get(name)
        if function is None:
            raise CelCompileError(f"undeclared reference to function {name!r}")

        def call(env: Activation) -> Any:
            try:
                return function(*(argument(env) for argument in arguments))
            except (TypeError, ValueError, AttributeError) as exc:
                raise CelEvalError(f"no matching overload for {name}: {exc}") from exc
        return call

    def _macro(self, name: str, target: Evaluator, arguments: Sequence[Any]) -> Evaluator:
        variable = _plain_ident(arguments[0]) if arguments else None
        expected = (2, 3) if name == "map" else (2,)
        if variable is None or len(arguments) not in expected:
            raise CelCompileError(f"malformed {name}() macro")
        inner = _Compiler(self.variables | {variable})
        bodies = [inner.compile(argument) for argument in arguments[1:]]
        return MACRO_BUILDERS[name](target, variable, bodies)


def _select_tree(tree: Any) -> ParseTree | None:
    """The member_dot node an expression consists of, if it is one."""
    while isinstance(tree, lark.Tree):
        if tree.data == "member_dot":
            return tree
        children = _children(tree)
        if tree.data not in _PASS_THROUGH or len(children) != 1:
            return None
        tree = children[0]
    return None


def _literal_value(token: lark.Token) -> Any:
    text = str(token)
    kind = token.type
    if kind == "INT_LIT":
        negative = text.startswith("-")
        digits = text.lstrip("-")
        number = int(digits, 16) if digits.lower().startswith("0x") else int(digits)
        return values.check_int(-number if negative else number)
    if kind == "UINT_LIT":
        digits = text[:-1]
        return values.check_int(Uint(int(digits, 16) if digits.lower().startswith("0x") else int(digits)))
    if kind == "FLOAT_LIT":
        return float(text)
    if kind in ("STRING_LIT", "MLSTRING_LIT"):
        return "".join(chr(code) if isinstance(code, int) else code for code in _decode_quoted(text))
    if kind == "BYTES_LIT":
        return b"".join(bytes([code]) if isinstance(code, int) else code.encode() for code in _decode_quoted(text[1:]))
    if kind == "BOOL_LIT":
        return text == "true"
    if kind == "NULL_LIT":
        return None
    raise CelCompileError(f"unsupported literal {text!r}")


def _decode_quoted(text: str) -> list[str | int]:
    """A quoted CEL literal's characters; octal and \\x escapes come back as ints (a byte
    in a bytes literal, a code point in a string). celpy's own decoder drops newlines of
    triple-quoted strings."""
    raw = text[:1] in ("r", "R")
    body = text[1:] if raw else text
    quote = 3 if body[:3] in ('"""', "'''") else 1
    body = body[quote:-quote]
    if raw:
        return list(body)
    decoded: list[str | int] = []
    for match in _ESCAPE.finditer(body):
        escape = match.group(1)
        if escape is None:
            decoded.append(match.group(0))
        elif escape in _SIMPLE_ESCAPES:
            decoded.append(_SIMPLE_ESCAPES[escape])
        elif escape[0] in "xuU":
            number = int(escape[1:], 16)
            decoded.append(number if escape[0] == "x" else chr(number))
        elif escape[0].isdigit():
            decoded.append(int(escape, 8))
        else:
            decoded.append(escape)
    return decoded
