"""CEL functions: the standard ones, plus the Kubernetes extension libraries (strings,
lists, regex) that CRD validation rules may call. A method call ``x.f(a)`` is the
function ``f(x, a)``; each function dispatches on the types it is given."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import re
from collections.abc import Callable
from typing import Any

from service.embedded_cluster.schema.cel_values import (
    INT64_MAX,
    INT64_MIN,
    TYPES,
    UINT64_MAX,
    CelEvalError,
    CelType,
    Uint,
    compare,
    equals,
    type_name,
)
from service.embedded_cluster.schema.regex import Regex, RegexError, regex

CelFunction = Callable[..., Any]

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def compile_regex(pattern: str) -> Regex:
    try:
        return regex(pattern)
    except RegexError as exc:
        raise CelEvalError(str(exc)) from exc


def parse_duration(text: str) -> dt.timedelta:
    """A Go duration string such as ``1h30m`` or ``-2.5s``."""
    sign, body = (-1, text[1:]) if text.startswith("-") else (1, text.removeprefix("+"))
    if body == "0":
        return dt.timedelta(0)
    position, seconds = 0, 0.0
    for match in _DURATION_PART.finditer(body):
        if match.start() != position:
            break
        seconds += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if not body or position != len(body):
        raise CelEvalError(f"invalid duration {text!r}")
    return dt.timedelta(seconds=sign * seconds)


def _to_int(value: Any) -> int:
    kind = type_name(value)
    if kind in ("int", "uint"):
        result = int(value)
    elif kind == "double":
        if math.isnan(value) or math.isinf(value):
            raise CelEvalError("double out of int range")
        result = int(value)
    elif kind == "string":
        try:
            result = int(value, 10)
        except ValueError as exc:
            raise CelEvalError(f"cannot convert {value!r} to int") from exc
    elif kind == "google.protobuf.Timestamp":
        result = int(value.timestamp())
    elif kind == "google.protobuf.Duration":
        result = int(value.total_seconds())
    else:
        raise CelEvalError(f"no such overload: int({kind})")
    if not INT64_MIN <= result <= INT64_MAX:
        raise CelEvalError("int overflow")
    return result


def _to_uint(value: Any) -> Uint:
    result = _to_int(value) if type_name(value) != "uint" else int(value)
    if not 0 <= result <= UINT64_MAX:
        raise CelEvalError("uint overflow")
    return Uint(result)


def _to_double(value: Any) -> float:
    kind = type_name(value)
    if kind in ("int", "uint", "double"):
        return float(value)
    if kind == "string":
        try:
            return float(value)
        except ValueError as exc:
            raise CelEvalError(f"cannot convert {value!r} to double") from exc
    raise CelEvalError(f"no such overload: double({kind})")


def _to_string(value: Any) -> str:
    kind = type_name(value)
    if kind == "string":
        return str(value)
    if kind == "bool":
        return "true" if value else "false"
    if kind in ("int", "uint"):
        return str(int(value))
    if kind == "double":
        return repr(value)
    if kind == "bytes":
        return bytes(value).decode("utf-8", errors="replace")
    if kind == "type":
        return str(value)
    if kind == "google.protobuf.Timestamp":
        return str(value.strftime("%Y-%m-%dT%H:%M:%SZ"))
    if kind == "google.protobuf.Duration":
        return f"{value.total_seconds():g}s"
    raise CelEvalError(f"no such overload: string({kind})")


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value in ("true", "True", "TRUE", "t", "1", "false", "False", "FALSE", "f", "0"):
        return value in ("true", "True", "TRUE", "t", "1")
    raise CelEvalError(f"no such overload: bool({type_name(value)})")


def _to_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise CelEvalError(f"no such overload: bytes({type_name(value)})")


def _to_timestamp(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise CelEvalError(f"invalid timestamp {value!r}") from exc
    if isinstance(value, int) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, tz=dt.UTC)
    raise CelEvalError(f"no such overload: timestamp({type_name(value)})")


def _to_duration(value: Any) -> dt.timedelta:
    if isinstance(value, dt.timedelta):
        return value
    if isinstance(value, str):
        return parse_duration(value)
    raise CelEvalError(f"no such overload: duration({type_name(value)})")


def _size(value: Any) -> int:
    if isinstance(value, str | bytes | list | dict):
        return len(value)
    raise CelEvalError(f"no such overload: size({type_name(value)})")


def _type_of(value: Any) -> CelType:
    return TYPES[type_name(value)]


def _string(value: Any, function: str) -> str:
    if not isinstance(value, str):
        raise CelEvalError(f"no such overload: {type_name(value)}.{function}()")
    return value


def _contains(target: Any, part: Any) -> bool:
    return _string(part, "contains") in _string(target, "contains")


def _starts_with(target: Any, prefix: Any) -> bool:
    return _string(target, "startsWith").startswith(_string(prefix, "startsWith"))


def _ends_with(target: Any, suffix: Any) -> bool:
    return _string(target, "endsWith").endswith(_string(suffix, "endsWith"))


def _matches(target: Any, pattern: Any) -> bool:
    return compile_regex(_string(pattern, "matches")).matches(_string(target, "matches"))


def _find(target: Any, pattern: Any) -> str:
    return compile_regex(_string(pattern, "find")).find(_string(target, "find")) or ""


def _find_all(target: Any, pattern: Any, limit: int = -1) -> list[str]:
    found = compile_regex(_string(pattern, "findAll")).find_all(_string(target, "findAll"))
    return found if limit < 0 else found[:limit]


def _char_at(target: Any, position: Any) -> str:
    text = _string(target, "charAt")
    if not 0 <= position <= len(text):
        raise CelEvalError(f"index out of range: {position}")
    return text[position:position + 1]


def _index_of(target: Any, item: Any, start: int = 0) -> int:
    if isinstance(target, list):
        return next((i for i, element in enumerate(target) if equals(element, item)), -1)
    text = _string(target, "indexOf")
    if not 0 <= start <= len(text):
        raise CelEvalError(f"index out of range: {start}")
    return text.find(_string(item, "indexOf"), start)


def _last_index_of(target: Any, item: Any, *start: int) -> int:
    if isinstance(target, list):
        return next((i for i in range(len(target) - 1, -1, -1) if equals(target[i], item)), -1)
    text = _string(target, "lastIndexOf")
    end = start[0] + len(item) if start else len(text)
    return text.rfind(_string(item, "lastIndexOf"), 0, end)


def _lower_ascii(target: Any) -> str:
    return "".join(c.lower() if c.isascii() else c for c in _string(target, "lowerAscii"))


def _upper_ascii(target: Any) -> str:
    return "".join(c.upper() if c.isascii() else c for c in _string(target, "upperAscii"))


def _replace(target: Any, old: Any, new: Any, limit: int = -1) -> str:
    return _string(target, "replace").replace(_string(old, "replace"), _string(new, "replace"), limit)


def _split(target: Any, separator: Any, limit: int = -1) -> list[str]:
    text, sep = _string(target, "split"), _string(separator, "split")
    if limit == 0:
        return []
    if sep == "":
        parts = list(text)
        return parts if limit < 0 or len(parts) <= limit else [*parts[:limit - 1], "".join(parts[limit - 1:])]
    return text.split(sep, limit - 1 if limit > 0 else -1)


def _substring(target: Any, start: int, end: int | None = None) -> str:
    text = _string(target, "substring")
    stop = len(text) if end is None else end
    if not 0 <= start <= stop <= len(text):
        raise CelEvalError(f"substring out of range: [{start}:{stop}]")
    return text[start:stop]


def _trim(target: Any) -> str:
    return _string(target, "trim").strip()


def _join(target: Any, separator: str = "") -> str:
    if not isinstance(target, list) or not all(isinstance(item, str) for item in target):
        raise CelEvalError("join needs a list of strings")
    return separator.join(target)


def _is_sorted(target: Any) -> bool:
    return all(compare(a, b) <= 0 for a, b in itertools.pairwise(target))


def _sum(target: Any) -> Any:
    if not isinstance(target, list):
        raise CelEvalError(f"no such overload: {type_name(target)}.sum()")
    total: Any = 0
    for item in target:
        total = total + item
    return total


def _extreme(target: Any, sign: int) -> Any:
    if not isinstance(target, list) or not target:
        raise CelEvalError("min/max of an empty list")
    best = target[0]
    for item in target[1:]:
        if compare(item, best) * sign > 0:
            best = item
    return best


FUNCTIONS: dict[str, CelFunction] = {
    "size": _size, "type": _type_of, "dyn": lambda value: value,
    "int": _to_int, "uint": _to_uint, "double": _to_double, "string": _to_string, "bool": _to_bool,
    "bytes": _to_bytes, "timestamp": _to_timestamp, "duration": _to_duration,
    "contains": _contains, "startsWith": _starts_with, "endsWith": _ends_with, "matches": _matches,
    "find": _find, "findAll": _find_all,
    "charAt": _char_at, "indexOf": _index_of, "lastIndexOf": _last_index_of, "lowerAscii": _lower_ascii,
    "upperAscii": _upper_ascii, "replace": _replace, "split": _split, "substring": _substring, "trim": _trim,
    "join": _join, "isSorted": _is_sorted, "sum": _sum,
    "min": lambda target: _extreme(target, -1), "max": lambda target: _extreme(target, 1),
}
