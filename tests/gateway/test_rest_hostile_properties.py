"""Property-based: requests generated from openapi.yaml, then made hostile, sent with a
real aiohttp client to the whole gateway, are never answered 5xx, and every 4xx is a
problem+json document the spec describes.

Bodies are generated from each operation's request schema (the names of the seeded demo
objects mixed in, so some get past validation into the use cases) and then mutated: one
value replaced by a number no field can hold (5000 digits, 1e999, past int64), text with
lone surrogates or NUL, a value of the wrong type, deep nesting, an oversized string; a
key made hostile; an unknown field; the whole body replaced (not an object, invalid
UTF-8). Path segments, query parameters and headers get the same treatment (percent-
encoded, so a lone surrogate arrives as invalid UTF-8). A stream's response is read up to
its head.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from yarl import URL

from tests.support.gateway import GatewayServer
from tests.support.openapi import api_spec

SPEC = api_spec().document
# A deeper search: DVP_HOSTILE_EXAMPLES=2000 (and DVP_HOSTILE_RANDOM=1 for new examples each run).
EXAMPLES = int(os.environ.get("DVP_HOSTILE_EXAMPLES", "60"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    derandomize=not os.environ.get("DVP_HOSTILE_RANDOM"),
                    # No shrinking: a failure is reported as generated, and the run stays bounded.
                    phases=(Phase.explicit, Phase.generate),
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])
TIMEOUT = aiohttp.ClientTimeout(total=20)
KNOWN = ("demo", "linux-vm", "linux-vm-root", "stopped-vm", "stopped-vm-root", "no-agent-vm",
         "linux-vm-root-snapshot", "00000000-0000-0000-0000-000000000000", "DryRun", "Strict", "10Gi", "app=web")


@dataclass(frozen=True)
class Raw:
    """JSON text sent as written: numbers Python will not print (5000 digits), 1e999, NaN."""

    text: str


NUMBERS = [Raw("9" * 5000), Raw("-" + "9" * 5000), Raw("1e999"), Raw("-1e999"), Raw("NaN"), Raw("-Infinity"),
           Raw("9223372036854775808"), Raw("-9223372036854775809"), Raw("2147483648"), Raw("1e-999"),
           Raw("1" + "0" * 400 + ".5"), 0, -1, 2**63 - 1]
TEXTS = ["\ud800", "\udfff", "a\udc80b", "\x00", "x\x00y", "\u202e", "\ufeff", "\U0010ffff", "'\";--", "../..",
         "a" * 600, "\u01c5", "%00", ""]
WRONG_TYPES: list[Any] = [None, True, False, [], {}, [1, "a"], {"a": {"b": None}}, 0.5]
OVERSIZED = "a" * (600 * 1024)  # past every operation's limit


def deep(levels: int, opener: str) -> Raw:
    closer = {"[": "]", "{\"a\":": "}"}[opener]
    return Raw(opener * levels + "1" + closer * levels)


def any_text(max_size: int = 40) -> st.SearchStrategy[str]:
    """Any code points, lone surrogates and NUL included (Hypothesis leaves surrogates out)."""
    return st.text(st.characters(exclude_categories=()), max_size=max_size)


HOSTILE_VALUES: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(NUMBERS), st.sampled_from(TEXTS), st.sampled_from(WRONG_TYPES), any_text(),
    st.integers(-(2**70), 2**70), st.floats(), st.just(OVERSIZED),
    st.builds(deep, st.integers(20, 3000), st.sampled_from(["[", "{\"a\":"])))
HOSTILE_KEYS = st.one_of(st.sampled_from(TEXTS), any_text(20))


def dump(value: Any, ascii_only: bool) -> str:
    """JSON text of ``value``. ``ascii_only``: a lone surrogate becomes a ``\\ud800`` escape;
    otherwise it is written as its (invalid) UTF-8 bytes."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{dump(k, ascii_only)}:{dump(v, ascii_only)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(v, ascii_only) for v in value) + "]"
    if isinstance(value, float) and value != value:
        return "NaN"
    return json.dumps(value, ensure_ascii=ascii_only)


# ---------------------------------------------------------------- the spec's operations


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        section, name = node["$ref"].split("/")[-2:]
        node = SPEC["components"][section][name]
    return node


@dataclass(frozen=True)
class Operation:
    operation_id: str
    method: str
    path: str
    path_params: dict[str, dict[str, Any]]
    query_params: dict[str, dict[str, Any]]
    headers: tuple[str, ...]
    body: dict[str, Any] | None

    @property
    def streams(self) -> bool:
        """Answers a stream (events, a disk image, the whole log): only its head is read."""
        return self.path.endswith((":watch", ":export"))


def operations() -> list[Operation]:
    found = []
    for path, item in SPEC["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, operation in item.items():
            if method == "parameters":
                continue
            params = [resolve(p) for p in item.get("parameters", []) + operation.get("parameters", [])]
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            found.append(Operation(
                operation["operationId"], method.upper(), path,
                {p["name"]: resolve(p["schema"]) for p in params if p["in"] == "path"},
                {p["name"]: resolve(p["schema"]) for p in params if p["in"] == "query"},
                tuple(p["name"] for p in params if p["in"] == "header"),
                resolve(body) if body else None))
    return found


OPERATIONS = operations()


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values the schema allows (a bounded subset: what openapi.yaml's request schemas use)."""
    schema = resolve(schema)
    if "anyOf" in schema:
        return st.one_of(*(from_schema(option) for option in schema["anyOf"]))
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        if not properties and isinstance(extra, dict):
            return st.dictionaries(st.sampled_from(["app", "team", "example.com/owner"]), from_schema(extra),
                                   max_size=3)
        required = set(schema.get("required", []))
        return st.fixed_dictionaries({k: from_schema(v) for k, v in properties.items() if k in required},
                                     optional={k: from_schema(v) for k, v in properties.items() if k not in required})
    if kind == "array":
        return st.lists(from_schema(schema["items"]), max_size=3)
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(schema.get("minimum", -(2**31)), min(schema.get("maximum", 2**31 - 1), 1000))
    if schema.get("format") == "uuid":
        return st.uuids().map(str)
    low, high = schema.get("minLength", 0), min(schema.get("maxLength", 64), 64)
    text = (st.from_regex(schema["pattern"], fullmatch=True) if "pattern" in schema
            else st.text(max_size=high)).filter(lambda s: low <= len(s) <= high)
    return st.one_of(st.sampled_from(KNOWN).filter(lambda s: low <= len(s)), text)


# ---------------------------------------------------------------- making it hostile


def paths_of(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON value (the value itself included)."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths_of(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths_of(item, (*prefix, index))
    return found


def replaced(value: Any, where: tuple[Any, ...], new: Any) -> Any:
    if not where:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[where[0]] = replaced(value[where[0]], where[1:], new)
    return copy


def objects_in(value: Any) -> list[tuple[Any, ...]]:
    return [where for where in paths_of(value) if isinstance(get(value, where), dict)]


def get(value: Any, where: tuple[Any, ...]) -> Any:
    for step in where:
        value = value[step]
    return value


def hostile_body(data: st.DataObject, schema: dict[str, Any]) -> tuple[bytes, str]:
    """A body of ``schema``, mutated; and how (for the failure message)."""
    body = data.draw(from_schema(schema), label="valid body")
    how = data.draw(st.sampled_from(["none", "value", "value", "value", "key", "unknown field", "whole",
                                     "bytes"]), label="mutation")
    if how == "value":
        where = data.draw(st.sampled_from(paths_of(body)[1:] or [()]), label="where")
        body = replaced(body, where, data.draw(HOSTILE_VALUES, label="value"))
    elif how in ("key", "unknown field"):
        where = data.draw(st.sampled_from(objects_in(body)), label="object")
        target = dict(get(body, where))
        if how == "key" and target:
            old = data.draw(st.sampled_from(sorted(target)), label="key")
            target[data.draw(HOSTILE_KEYS, label="new key")] = target.pop(old)
        else:
            target[data.draw(st.one_of(HOSTILE_KEYS, st.just("extra")), label="unknown")] = data.draw(
                st.one_of(HOSTILE_VALUES, st.just("x")), label="its value")
        body = replaced(body, where, target)
    elif how == "whole":
        body = data.draw(HOSTILE_VALUES, label="whole body")
    elif how == "bytes":
        return data.draw(st.binary(max_size=64), label="bytes"), how
    ascii_only = data.draw(st.booleans(), label="ascii only")
    return dump(body, ascii_only).encode("utf-8", "surrogatepass"), how


def segment(data: st.DataObject, schema: dict[str, Any], label: str) -> str:
    """A path segment or query value, percent-encoded (a lone surrogate as invalid UTF-8)."""
    hostile = st.one_of(st.sampled_from(TEXTS), any_text(), st.just("9" * 5000), st.just("a" * 3000))
    valid = from_schema(schema).map(str)
    text = data.draw(st.one_of(valid, valid, hostile), label=label)
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def header_values() -> st.SearchStrategy[str]:
    # What a client library can send: no CR/LF, no lone surrogates.
    printable = st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=200)
    return st.one_of(printable, st.sampled_from(["9" * 5000, "bytes=0-" + "9" * 30, "\"x\"", "k" * 300, "gzip", "br",
                                                 "deflate", "zstd", "text/csv", "application/x-ndjson"]))


@dataclass(frozen=True)
class Request:
    method: str
    url: URL
    headers: dict[str, str]
    body: bytes | None
    how: str


def hostile_request(data: st.DataObject, server: GatewayServer, operation: Operation) -> Request:
    path = operation.path
    for name, schema in operation.path_params.items():
        path = path.replace("{" + name + "}", segment(data, schema, name) or "x")
    query = []
    for name, schema in operation.query_params.items():
        if data.draw(st.booleans(), label=f"send {name}"):
            query.append(f"{quote(name)}={segment(data, schema, name)}")
    if data.draw(st.integers(0, 9), label="unknown parameter") == 0:
        query.append(f"{segment(data, {}, 'unknown name')}=1")
    headers = {**server.auth(), "Content-Type": data.draw(st.one_of(st.sampled_from(
        ["application/json"] * 8 + ["text/plain", "application/json; charset=latin-1", "application/json; a=\"",
         ";;;", "application/json; charset=" + "x" * 5000]), header_values()),
        label="content type")}
    for name in (*operation.headers, "Accept", "X-Request-Id", "Content-Encoding"):
        if data.draw(st.booleans(), label=f"send {name}"):
            headers[name] = data.draw(header_values(), label=name)
    body, how = (None, "no body")
    if operation.body is not None:
        body, how = hostile_body(data, operation.body)
    elif data.draw(st.integers(0, 9), label="a body where none belongs") == 0:
        body, how = b"{}", "a body where none belongs"
    url = URL(server.rest_url + path + ("?" + "&".join(query) if query else ""), encoded=True)
    return Request(operation.method, url, headers, body, how)


async def check(http: aiohttp.ClientSession, request: Request, streams: bool) -> None:
    async with http.request(request.method, request.url, headers=request.headers, data=request.body,
                            timeout=TIMEOUT) as resp:
        what = f"{request.method} {str(request.url)[:300]} ({request.how}) -> {resp.status}"
        assert resp.status < 500, what + " " + (await resp.text(errors="replace"))[:1000]
        assert resp.headers.get("X-Request-Id"), what
        if resp.status < 400:
            if streams:
                resp.close()   # an event stream or a disk image: the head is the answer
            return
        assert resp.content_type == "application/problem+json", what
        problem = json.loads(await resp.read())
        assert problem["status"] == resp.status, what
        api_spec().validate_schema("Problem", problem)


@pytest.fixture
async def http() -> Any:
    async with aiohttp.ClientSession() as session:
        yield session


BODIED = [op for op in OPERATIONS if op.body is not None]


@pytest.mark.timeout(300)
@SETTINGS
@given(data=st.data())
async def test_hostile_bodies_get_a_problem_never_a_server_error(
        gateway_server: GatewayServer, http: aiohttp.ClientSession, data: st.DataObject) -> None:
    operation = data.draw(st.sampled_from(BODIED), label="operation")
    await check(http, hostile_request(data, gateway_server, operation), operation.streams)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@SETTINGS
@given(data=st.data())
async def test_hostile_paths_queries_and_headers_get_a_problem_never_a_server_error(
        gateway_server: GatewayServer, http: aiohttp.ClientSession, data: st.DataObject) -> None:
    operation = data.draw(st.sampled_from(OPERATIONS), label="operation")
    await check(http, hostile_request(data, gateway_server, operation), operation.streams)


def test_every_operation_and_body_schema_is_generated() -> None:
    assert {op.operation_id for op in OPERATIONS} == {
        op["operationId"] for path, item in SPEC["paths"].items() if path.startswith("/v1/")
        for method, op in item.items() if method != "parameters"}
    assert {op.operation_id for op in BODIED} == {
        "CreateDiskSnapshot", "CreateVirtualMachineSnapshot", "RestoreDisk", "RestoreVirtualMachine",
        "CloneVirtualMachine", "CreateVirtualMachineFromSnapshot", "CancelOperation", "VerifyAuditLog",
        "VerifyAuditLogStream"}
