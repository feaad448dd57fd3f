"""The REST door under hostile input, against the whole gateway (embedded cluster, real
database): every such request is the caller's error, a 4xx problem+json naming the REST
field, never a 500; and every refusal is in the audit log with the path's namespace.

The listener's timeouts are in test_rest_hostile_listener.py; property-based requests
generated from openapi.yaml in test_rest_hostile_properties.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from yarl import URL

from service.api.rest.body import BODY_LIMITS
from service.api.rest.names import rest_field_name, rest_text
from tests.support.gateway import GatewayServer
from tests.support.openapi import api_spec

NINES = "9" * 5000
NS = "/v1/namespaces/demo"
OP = "/v1/operations/00000000-0000-0000-0000-000000000000"
JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Case:
    method: str
    path: str                       # sent as written (percent-escapes included)
    body: bytes | None = None
    status: int = 400
    field: str = ""                 # a fieldViolation that must name this REST field
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


def body(text: str) -> bytes:
    """A JSON body written by hand: ``\\ud800`` escapes stay escapes for the server to decode."""
    return text.encode()


DISK = '"virtualDiskName": "linux-vm-root"'
CASES: dict[str, Case] = {
    # numbers beyond any range
    "a 5000-digit page size": Case("GET", f"/v1/operations?pageSize={NINES}", field="pageSize"),
    "a page size past int32": Case("GET", f"{NS}/disk-snapshots?pageSize=2147483648", field="pageSize"),
    "a negative page size": Case("GET", f"{NS}/vm-snapshots?pageSize=-1", field="pageSize"),
    "a 5000-digit ttl": Case("GET", f"{NS}/disks/linux-vm-root:export?ttl={NINES}s", field="ttl"),
    "a 5000-digit integer for a boolean": Case(
        "POST", f"{NS}/disk-snapshots", body(f'{{{DISK}, "requiredConsistency": {NINES}}}'),
        field="requiredConsistency"),
    "1e999 for a boolean": Case("POST", f"{NS}/disk-snapshots", body(f'{{{DISK}, "requiredConsistency": 1e999}}'),
                                field="requiredConsistency"),
    "past int64 for a string": Case("POST", f"{NS}/disks:restore",
                                    body('{"name": "d", "diskSnapshotName": "s", "size": -9223372036854775809}'),
                                    field="size"),
    "a 5000-digit size": Case("POST", f"{NS}/disks:restore",
                              body(f'{{"name": "d", "diskSnapshotName": "s", "size": {NINES}}}'), field="size"),
    "NaN for a flag": Case("POST", f"{OP}:cancel", body('{"force": NaN}'), field="force"),
    "-Infinity in a name map": Case(
        "POST", f"{NS}/virtual-machines/linux-vm:clone",
        body('{"mode": "DryRun", "nameReplacements": [{"from": {"name": -Infinity}, "to": "x"}]}'),
        field="nameReplacements[0].from.name"),
    # text nothing downstream can encode or store
    "a lone surrogate in a name": Case("POST", f"{NS}/disk-snapshots", body(f'{{{DISK}, "name": "\\ud800"}}'),
                                       field="name"),
    "a lone surrogate in a label key": Case(
        "POST", f"{NS}/disk-snapshots", body(f'{{{DISK}, "labels": {{"\\ud800": "x"}}}}'),
        field="labels['\\ud800']"),
    "a lone surrogate in an annotation value": Case(
        "POST", f"{NS}/vm-snapshots", body('{"virtualMachineName": "linux-vm", "annotations": {"a": "\\udfff"}}'),
        field="annotations['a']"),
    "NUL in an annotation value": Case(
        "POST", f"{NS}/disk-snapshots", body(f'{{{DISK}, "annotations": {{"a": "x\\u0000"}}}}'),
        field="annotations['a']"),
    "a lone surrogate in a clone's name map": Case(
        "POST", f"{NS}/vm-snapshots/s:clone",
        body('{"mode": "DryRun", "nameReplacements": [{"from": {"name": "\\udbff"}, "to": "x"}]}'),
        field="nameReplacements[0].from.name"),
    "a lone surrogate as an unknown field": Case("POST", f"{NS}/disk-snapshots", body(f'{{{DISK}, "\\ud800": 1}}'),
                                                 field="\\ud800"),
    "NUL in a query value": Case("GET", "/v1/operations?actor=%00", field="actor"),
    "NUL in an audit filter": Case("GET", "/v1/audit/events?namespace=a%00", field="namespace"),
    "NUL in a label selector": Case("GET", f"{NS}/disk-snapshots?labelSelector=app%3D%00", field="labelSelector"),
    "invalid UTF-8 in a page token": Case("GET", f"{NS}/disk-snapshots?pageToken=%ED%A0%80", field="pageToken"),
    "NUL in the path's namespace": Case("GET", "/v1/namespaces/%00/disk-snapshots", field="namespace"),
    "NUL in the path's name": Case("GET", f"{NS}/disk-snapshots/a%00b", field="name"),
    "NUL in an operation id": Case("GET", "/v1/operations/%00:watch", field="id"),
    "invalid UTF-8 in the path": Case("GET", f"{NS}/vm-snapshots/%ED%A0%80", field="name"),
    "a 300-character namespace": Case("GET", f"/v1/namespaces/{'a' * 300}/disk-snapshots", field="namespace"),
    "a 20000-character name": Case("DELETE", f"{NS}/disk-snapshots/{'a' * 20000}", field="name"),
    # wrong shapes
    "a string body": Case("POST", f"{NS}/disk-snapshots", body('"virtualDiskName"'), field="body"),
    "an array body": Case("POST", f"{NS}/vm-snapshots", body("[]"), field="body"),
    "a null body": Case("POST", f"{NS}/disks:restore", body("null"), field="body"),
    "a number body": Case("POST", f"{OP}:cancel", body("1"), field="body"),
    "invalid UTF-8 JSON": Case("POST", f"{NS}/disk-snapshots", b'{"virtualDiskName": "\xff"}', field="body"),
    "100000 open brackets": Case("POST", f"{NS}/disk-snapshots", b"[" * 100_000, field="body"),
    "deep nesting under a known field": Case(
        "POST", f"{NS}/disk-snapshots", body(f'{{{DISK}, "labels": {{"a": {"[" * 40}{"]" * 40}}}}}'), field="body"),
    "an object for a string": Case("POST", f"{NS}/disk-snapshots", body('{"virtualDiskName": {}}'),
                                   field="virtualDiskName"),
    "an array for an object": Case("POST", f"{NS}/virtual-machines/linux-vm:clone",
                                   body('{"mode": "DryRun", "customization": []}'), field="customization"),
    "a number for an enum": Case("POST", f"{NS}/virtual-machines/linux-vm:restore",
                                 body('{"virtualMachineSnapshotName": "s", "mode": 1}'), field="mode"),
    "a field VerifyAuditLog does not have": Case("POST", "/v1/audit:verify", body('{"x": 1}'), field="x"),
    "a duplicated field": Case("POST", f"{NS}/disk-snapshots", body(f'{{{DISK}, {DISK}}}'), field="virtualDiskName"),
    # the core's own checks, reported with the REST names
    "the core's name check": Case("POST", f"{NS}/disk-snapshots", body('{"virtualDiskName": "Bad_Name"}'),
                                  field="virtualDiskName"),
    "the core's generateName check": Case(
        "POST", f"{NS}/vm-snapshots", body('{"virtualMachineName": "linux-vm", "name": "a", "generateName": "b-"}'),
        field="generateName"),
    "the core's page token check": Case("GET", f"{NS}/disk-snapshots?pageToken=junk", field="pageToken"),
    "the core's operation id check": Case("GET", "/v1/operations/not-a-uuid/timeline", field="id"),
    # sizes and media types
    "a cancel body over 4 KiB": Case("POST", f"{OP}:cancel", body('{"force": false' + " " * 5000 + "}"),
                                     status=413),
    "a body on a GET": Case("GET", f"{NS}/disk-snapshots", b"{}", status=413),
    "a body on a DELETE": Case("DELETE", f"{NS}/disk-snapshots/x", b"{}", status=413),
    "a create body over 512 KiB": Case("POST", f"{NS}/disk-snapshots",
                                       body(f'{{{DISK}, "name": "{"a" * (512 * 1024)}"}}'), status=413),
    "a form body": Case("POST", f"{NS}/disks:restore", b"name=d", status=415,
                        headers={"Content-Type": "application/x-www-form-urlencoded"}),
    "a body that is not the gzip it claims": Case("POST", f"{NS}/disk-snapshots", body(f"{{{DISK}}}"), status=415,
                                                  headers={"Content-Encoding": "gzip"}),
}
# A snake_case field name the core uses must never reach a REST caller.
CORE_NAMES = ("virtual_disk_name", "generate_name", "page_token", "next_page_token", "required_consistency",
              "virtual_machine_name", "name_replacements", "request_id", "operation_id")


@dataclass
class Answer:
    status: int
    content_type: str
    problem: dict[str, Any]

    def fields(self) -> set[str]:
        return {v["field"] for v in self.problem.get("fieldViolations") or []}


async def send(http: aiohttp.ClientSession, base: str, case: Case, headers: dict[str, str]) -> Answer:
    sent = {**(JSON if case.body is not None else {}), **headers, **case.headers}
    async with http.request(case.method, URL(base + case.path, encoded=True), data=case.body, headers=sent) as resp:
        raw = await resp.read()
        problem = json.loads(raw) if resp.content_type == "application/problem+json" else {}
        return Answer(resp.status, resp.content_type, problem)


def mistakes(case: Case, answer: Answer) -> str:
    """What is wrong with ``answer`` ("" when nothing)."""
    if answer.status != case.status or answer.content_type != "application/problem+json":
        return f"{answer.status} {answer.content_type}: {answer.problem}"
    api_spec().validate_schema("Problem", answer.problem)
    if case.field and case.field not in answer.fields():
        return f"no violation of {case.field!r}: {answer.problem}"
    text = json.dumps(answer.problem)
    leaked = [name for name in CORE_NAMES if name in text]
    return f"core names {leaked} in {answer.problem}" if leaked else ""


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_hostile_requests_are_the_callers_error_naming_the_rest_field(
        gateway_server: GatewayServer, http: aiohttp.ClientSession) -> None:
    wrong = {}
    for name, case in CASES.items():
        answer = await send(http, gateway_server.rest_url, case, gateway_server.auth())
        if problem := mistakes(case, answer):
            wrong[name] = problem
    assert wrong == {}


async def test_a_chunked_body_is_held_to_the_operations_limit(gateway_server: GatewayServer,
                                                              http: aiohttp.ClientSession) -> None:
    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit holds while reading
        yield b'{"force": false'
        for _ in range(8):
            yield b" " * 1024
        yield b"}"

    async with http.post(f"{gateway_server.rest_url}{OP}:cancel", data=chunks(),
                         headers={**gateway_server.auth(), **JSON}) as resp:
        assert resp.status == 413 and resp.content_type == "application/problem+json"
        assert (await resp.json(content_type=None))["reason"] == "PAYLOAD_TOO_LARGE"


def test_every_body_limit_is_an_operation_that_takes_a_body() -> None:
    document = api_spec().document
    with_bodies = {operation["operationId"] for item in document["paths"].values()
                   for operation in item.values() if isinstance(operation, dict) and "requestBody" in operation}
    assert set(BODY_LIMITS) == with_bodies
    for item in document["paths"].values():
        for operation in item.values():
            if isinstance(operation, dict) and "requestBody" in operation:
                declared = operation["requestBody"]["x-max-body-bytes"]
                assert declared == BODY_LIMITS[operation["operationId"]], operation["operationId"]


RAW_CASES: dict[str, tuple[bytes, int, str]] = {
    # A header's non-UTF-8 bytes reach the handlers as lone surrogates.
    "non-UTF-8 bytes in the token": (b"GET /v1/operations HTTP/1.1\r\nAuthorization: Bearer \xff\xfe\r\n", 401, ""),
    "non-UTF-8 bytes in the idempotency key": (
        b"POST /v1/namespaces/demo/disk-snapshots HTTP/1.1\r\nAuthorization: Bearer {token}\r\n"
        b"Idempotency-Key: \xff\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", 400,
        "Idempotency-Key"),
    "non-UTF-8 bytes in a watch position": (
        b"GET /v1/operations/00000000-0000-0000-0000-000000000000:watch HTTP/1.1\r\n"
        b"Authorization: Bearer {token}\r\nLast-Event-ID: \xff\r\n", 400, "Last-Event-ID"),
}


async def raw_exchange(port: int, request: bytes) -> tuple[int, str, dict[str, Any], bytes]:
    """Status, content type, problem document and the whole answer of one raw request."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, payload = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    content_type = headers.get("Content-Type", "").split(";")[0]
    problem = json.loads(payload) if content_type == "application/problem+json" else {}
    return int(lines[0].split()[1]), content_type, problem, answer


async def test_raw_bytes_the_client_libraries_would_not_send(gateway_server: GatewayServer) -> None:
    wrong = {}
    for name, (template, status, field_name) in RAW_CASES.items():
        head, _, rest = template.replace(b"{token}", gateway_server.token.encode()).partition(b"\r\n")
        request = head + b"\r\nHost: x\r\nConnection: close\r\n" + rest
        request += b"" if b"\r\n\r\n" in request else b"\r\n"
        got, content_type, problem, answer = await raw_exchange(gateway_server.app.rest_port, request)
        fields = {v["field"] for v in problem.get("fieldViolations") or []}
        if got != status or content_type != "application/problem+json" or (field_name and field_name not in fields):
            wrong[name] = answer[:300]
        elif b"\xff" in answer or gateway_server.token.encode() in answer:
            wrong[name] = b"echoes what it refused: " + answer[:300]
    assert wrong == {}


async def test_the_gateway_serves_rest_with_the_listener_that_has_a_header_timeout(
        gateway_server: GatewayServer) -> None:
    """Needs service/app.py to serve with ``rest_runner`` (see the report); the timeouts
    themselves are measured in test_rest_hostile_listener.py. A request the HTTP parser
    refuses shows which runner serves: only ``rest_runner``'s answers with a problem."""
    request = b"GET /v1/operations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer se\x00cret\r\n\r\n"
    status, content_type, problem, answer = await raw_exchange(gateway_server.app.rest_port, request)
    assert (status, content_type, problem.get("reason")) == (400, "application/problem+json",
                                                             "MALFORMED_HTTP_REQUEST"), answer


@pytest.mark.parametrize(("core", "fields", "rest"), [
    ("the request is invalid: virtual_disk_name, labels['a_b'], options.name_prefix",
     ["virtual_disk_name", "labels['a_b']", "options.name_prefix"],
     "the request is invalid: virtualDiskName, labels['a_b'], customization.namePrefix"),
    ("request_id 'k_1' was already used with a different request body", [],
     "Idempotency-Key 'k_1' was already used with a different request body"),
    ("must be a next_page_token from the same list call", [], "must be a nextPageToken from the same list call"),
    ("set at least one of customization.name_prefix, customization.name_suffix or name_replacements", [],
     "set at least one of customization.namePrefix, customization.nameSuffix or nameReplacements"),
    ("generate_name must be empty when name is given", ["generate_name"],
     "generateName must be empty when name is given"),
    # Not a field of any request, or a value the caller sent: left as written.
    ("the virtual_machine is down; 'page_token' was sent", [], "the virtual_machine is down; 'page_token' was sent"),
])
def test_core_messages_speak_of_rest_fields(core: str, fields: list[str], rest: str) -> None:
    assert rest_text(core, fields) == rest


def test_an_operations_id_is_the_paths_id() -> None:
    assert rest_field_name("operation_id") == "id"


# ---------------------------------------------------------------- refusals in the audit log

REFUSALS: dict[str, tuple[Case, bool]] = {
    # (the call, whether it is sent with a token)
    "no token (401)": (Case("GET", f"{NS}/disk-snapshots", status=401), False),
    "a bad token (401)": (Case("POST", f"{NS}/disk-snapshots", body(f"{{{DISK}}}"), status=401,
                               headers={"Authorization": "Bearer not-a-token"}), False),
    "a body over the limit (413)": (Case("POST", f"{NS}/virtual-machines/linux-vm:restore",
                                         body('{"mode": "Strict"' + " " * 5000 + "}"), status=413), True),
    "a form body (415)": (Case("POST", f"{NS}/disks:restore", b"a=b", status=415,
                               headers={"Content-Type": "application/x-www-form-urlencoded"}), True),
    "an unknown field (400)": (Case("POST", f"{NS}/vm-snapshots", body('{"colour": "red"}')), True),
    "an unknown query parameter (400)": (Case("GET", f"{NS}/vm-snapshots?colour=red"), True),
    "the core's validation (400)": (Case("POST", f"{NS}/disk-snapshots", body('{"virtualDiskName": "A_B"}')), True),
}


async def test_every_refused_call_is_audited_with_the_paths_namespace(gateway_server: GatewayServer,
                                                                      http: aiohttp.ClientSession) -> None:
    """Needs the core's authenticate/record_rejection to take ``namespace`` (see the report)."""
    wrong: dict[str, Any] = {}
    for number, (name, (case, with_token)) in enumerate(REFUSALS.items()):
        rid = f"hostile-refusal-{number}"
        headers = {"X-Request-Id": rid, **(gateway_server.auth() if with_token else {})}
        answer = await send(http, gateway_server.rest_url, case, headers)
        if answer.status != case.status:
            wrong[name] = f"answered {answer.status}: {answer.problem}"
            continue
        events = [e for e in await audit_events(http, gateway_server) if e["requestId"] == rid]
        if [(e["namespace"], e["outcome"] != "SUCCESS") for e in events] != [("demo", True)]:
            wrong[name] = events
    assert wrong == {}


async def test_a_namespace_nothing_can_store_is_audited_escaped(gateway_server: GatewayServer,
                                                                http: aiohttp.ClientSession) -> None:
    """Needs the core's authenticate/record_rejection to take ``namespace`` (see the report)."""
    case = Case("GET", "/v1/namespaces/de%00mo/disk-snapshots", field="namespace")
    answer = await send(http, gateway_server.rest_url, case, {**gateway_server.auth(), "X-Request-Id": "nul-ns"})
    assert not mistakes(case, answer)
    events = [e for e in await audit_events(http, gateway_server) if e["requestId"] == "nul-ns"]
    assert [(e["namespace"], e["outcome"], e["reason"]) for e in events] == [
        ("de\\x00mo", "ERROR", "INVALID_ARGUMENT")]


async def audit_events(http: aiohttp.ClientSession, server: GatewayServer) -> list[dict[str, Any]]:
    async with http.get(f"{server.rest_url}/v1/audit/events", params={"pageSize": "500"},
                        headers=server.auth()) as resp:
        assert resp.status == 200
        items: list[dict[str, Any]] = (await resp.json())["items"]
        return items
