"""CEL value semantics over plain JSON-like Python values (dict, list, str, int, float,
bool, None), so admission never converts objects into another type system.

Equality is CEL's heterogeneous equality (values of different types are unequal,
numbers compare by value); ordering and arithmetic raise ``CelEvalError`` on a type
mismatch, as a type-checked CEL program would never reach them.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Activation = dict[str, Any]              # variable name -> value
Evaluator = Callable[[Activation], Any]   # a compiled CEL expression

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1


class CelEvalError(Exception):
    """A CEL runtime error (no such key, no matching overload, overflow...)."""


class Uint(int):
    """A CEL ``uint`` (Python has one integer type)."""


@dataclass(frozen=True)
class CelType:
    """A CEL type value, what ``type(x)`` returns and what ``int`` names."""

    name: str

    def __str__(self) -> str:
        return self.name


TYPE_NAMES = ("bool", "int", "uint", "double", "string", "bytes", "list", "map", "null_type", "type",
              "google.protobuf.Timestamp", "google.protobuf.Duration")
TYPES = {name: CelType(name) for name in TYPE_NAMES}


def type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, Uint):
        return "uint"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bytes):
        return "bytes"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "map"
    if value is None:
        return "null_type"
    if isinstance(value, CelType):
        return "type"
    if isinstance(value, dt.datetime):
        return "google.protobuf.Timestamp"
    if isinstance(value, dt.timedelta):
        return "google.protobuf.Duration"
    raise CelEvalError(f"unsupported value type {type(value).__name__}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def equals(left: Any, right: Any) -> bool:
    if type(left) is str and type(right) is str:   # the common case, first
        return left == right
    if _is_number(left) and _is_number(right):
        return bool(left == right)
    left_type, right_type = type_name(left), type_name(right)
    if left_type != right_type:
        return False
    if left_type == "list":
        return len(left) == len(right) and all(equals(a, b) for a, b in zip(left, right, strict=True))
    if left_type == "map":
        if len(left) != len(right):
            return False
        return all(key in right and equals(value, right[key]) for key, value in left.items())
    return bool(left == right)


def compare(left: Any, right: Any) -> int:
    """-1, 0 or 1; raises for values CEL does not order."""
    if _is_number(left) and _is_number(right):
        if (isinstance(left, float) and math.isnan(left)) or (isinstance(right, float) and math.isnan(right)):
            raise CelEvalError("NaN is not ordered")
        return int(left > right) - int(left < right)
    left_type = type_name(left)
    if left_type != type_name(right) or left_type not in ("string", "bytes", "bool", "google.protobuf.Timestamp",
                                                           "google.protobuf.Duration"):
        raise CelEvalError(f"no such overload: {left_type} < {type_name(right)}")
    return int(left > right) - int(left < right)


def check_int(value: int) -> int:
    if isinstance(value, Uint):
        if not 0 <= value <= UINT64_MAX:
            raise CelEvalError("uint overflow")
        return value
    if not INT64_MIN <= value <= INT64_MAX:
        raise CelEvalError("int overflow")
    return value


def _same_numeric_kind(left: Any, right: Any) -> str:
    kind = type_name(left)
    if kind != type_name(right) or kind not in ("int", "uint", "double"):
        raise CelEvalError(f"no such overload: {kind} and {type_name(right)}")
    return kind


def add(left: Any, right: Any) -> Any:
    kind = type_name(left)
    if kind in ("string", "bytes", "list") and kind == type_name(right):
        return left + right
    if kind == "google.protobuf.Timestamp" and isinstance(right, dt.timedelta):
        return left + right
    if kind == "google.protobuf.Duration" and isinstance(right, dt.timedelta | dt.datetime):
        return left + right
    kind = _same_numeric_kind(left, right)
    if kind == "double":
        return float(left + right)
    return _wrap_int(kind, left + right)


def subtract(left: Any, right: Any) -> Any:
    if isinstance(left, dt.datetime) and isinstance(right, dt.datetime | dt.timedelta):
        return left - right
    if isinstance(left, dt.timedelta) and isinstance(right, dt.timedelta):
        return left - right
    kind = _same_numeric_kind(left, right)
    if kind == "double":
        return float(left - right)
    return _wrap_int(kind, left - right)


def multiply(left: Any, right: Any) -> Any:
    kind = _same_numeric_kind(left, right)
    if kind == "double":
        return float(left * right)
    return _wrap_int(kind, left * right)


def divide(left: Any, right: Any) -> Any:
    kind = _same_numeric_kind(left, right)
    if kind == "double":
        return left / right if right else math.copysign(math.inf, left) if left else math.nan
    if right == 0:
        raise CelEvalError("division by zero")
    quotient = abs(left) // abs(right)   # CEL truncates toward zero
    return _wrap_int(kind, quotient if (left < 0) == (right < 0) else -quotient)


def modulo(left: Any, right: Any) -> Any:
    kind = _same_numeric_kind(left, right)
    if kind == "double":
        raise CelEvalError("no such overload: double % double")
    if right == 0:
        raise CelEvalError("modulus by zero")
    remainder = abs(left) % abs(right)   # the sign follows the dividend, as in Go
    return _wrap_int(kind, remainder if left >= 0 else -remainder)


def negate(value: Any) -> Any:
    kind = type_name(value)
    if kind == "int":
        return check_int(-value)
    if kind == "double":
        return -value
    if kind == "google.protobuf.Duration":
        return -value
    raise CelEvalError(f"no such overload: -{kind}")


def _wrap_int(kind: str, value: int) -> int:
    return check_int(Uint(value) if kind == "uint" else value)


def contains(container: Any, item: Any) -> bool:
    """The ``in`` operator."""
    if isinstance(container, list):
        return any(equals(item, element) for element in container)
    if isinstance(container, dict):
        return any(equals(item, key) for key in container)
    raise CelEvalError(f"no such overload: in {type_name(container)}")


def index(container: Any, key: Any) -> Any:
    if isinstance(container, list):
        if not _is_number(key) or (isinstance(key, float) and not key.is_integer()):
            raise CelEvalError("list index must be an integer")
        position = int(key)
        if not 0 <= position < len(container):
            raise CelEvalError(f"index out of bounds: {position}")
        return container[position]
    if isinstance(container, dict):
        if isinstance(key, str | int) and key in container:
            return container[key]
        raise CelEvalError(f"no such key: {key!r}")
    raise CelEvalError(f"no such overload: {type_name(container)}[{type_name(key)}]")


def select(container: Any, field: str) -> Any:
    if isinstance(container, dict):
        if field in container:
            return container[field]
        raise CelEvalError(f"no such key: {field}")
    raise CelEvalError(f"type '{type_name(container)}' does not support field selection")


def has_field(container: Any, field: str) -> bool:
    if isinstance(container, dict):
        return field in container
    raise CelEvalError(f"invalid type for field selection: {type_name(container)}")


def truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise CelEvalError(f"no such overload: expected bool, got {type_name(value)}")
