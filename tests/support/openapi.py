"""Check real HTTP exchanges against openapi.yaml (openapi-core), and event/line payloads
against its component schemas (jsonschema)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import jsonschema  # type: ignore[import-untyped]
import yaml
from multidict import CIMultiDict
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

SPEC_PATH = Path(__file__).resolve().parents[2] / "openapi.yaml"


def _json(data: bytes | str, **_params: str) -> Any:
    return json.loads(data)


def _text(data: bytes | str, **_params: str) -> str:
    return data.decode("utf-8") if isinstance(data, bytes) else data


@dataclass
class _Request:
    host_url: str
    path: str
    path_pattern: str
    method: str
    parameters: RequestParameters
    content_type: str = "application/json"
    body: bytes | None = None


@dataclass
class _Response:
    status_code: int
    content_type: str
    headers: Headers
    data: bytes | None = field(default=None)


@dataclass(frozen=True)
class Exchange:
    """One validated response: status, headers, raw body."""

    status: int
    headers: CIMultiDict[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class ApiSpec:
    def __init__(self, path: Path = SPEC_PATH) -> None:
        self.document: dict[str, Any] = yaml.safe_load(path.read_text())
        self.openapi = OpenAPI.from_path(path, config=Config(extra_media_type_deserializers={
            "application/problem+json": _json, "application/x-ndjson": _text, "text/csv": _text,
            "text/event-stream": _text, "application/yaml": _text}))
        # Custom methods (":verb") must not be mistaken for a "{name}" value: the server
        # routes names as [^/:]+, so do the same to find the operation a URL belongs to.
        self._templates = [(template, re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/:]+", re.escape(template)) + "$"))
                           for template in self.document["paths"]]

    def template_of(self, path: str) -> str:
        matches = [template for template, regex in self._templates if regex.match(path)]
        assert len(matches) == 1, f"{path} matches {matches} in openapi.yaml"
        return str(matches[0])

    def validate_exchange(self, method: str, url: str, request_headers: dict[str, str], status: int,
                          response_headers: CIMultiDict[str], body: bytes) -> None:
        parts = urlsplit(url)
        query = ImmutableMultiDict(parse_qsl(parts.query, keep_blank_values=True))
        request = _Request(host_url=f"{parts.scheme}://{parts.netloc}", path=parts.path,
                           path_pattern=self.template_of(parts.path), method=method.lower(),
                           parameters=RequestParameters(query=query, header=Headers(request_headers)))
        content_type = response_headers.get("Content-Type", "")
        response = _Response(status_code=status, content_type=content_type,
                             headers=Headers(list(response_headers.items())), data=body)
        self.openapi.validate_response(request, response)  # raises on any disagreement

    def validate_schema(self, name: str, instance: Any) -> None:
        """Validate against components/schemas/<name>, resolving local references."""
        schema = {"$ref": f"#/components/schemas/{name}", "components": self.document["components"]}
        jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(instance)


@cache
def api_spec() -> ApiSpec:
    return ApiSpec()


async def call(session: aiohttp.ClientSession, method: str, url: str, *, json_body: Any = None,
               data: bytes | None = None, headers: dict[str, str] | None = None) -> Exchange:
    """Make a request and validate the response (status, headers, content type, body) against the spec."""
    sent = dict(headers or {})
    if json_body is not None:
        data = json.dumps(json_body).encode()
        sent.setdefault("Content-Type", "application/json")
    async with session.request(method, url, data=data, headers=sent) as resp:
        body = await resp.read()
        exchange = Exchange(resp.status, CIMultiDict(resp.headers), body)
        api_spec().validate_exchange(method, str(resp.url), sent, resp.status, exchange.headers, body)
    assert exchange.headers.get("X-Request-Id"), "every response carries X-Request-Id"
    if exchange.headers.get("Content-Type", "").startswith("application/problem+json"):
        problem = exchange.json()
        assert problem["status"] == resp.status
        api_spec().validate_schema("Problem", problem)
    return exchange


@dataclass(frozen=True)
class SseMessage:
    event: str
    id: str
    data: Any


def parse_sse(text: str) -> tuple[list[SseMessage], int]:
    """Events and the number of comment lines of a complete SSE body."""
    messages: list[SseMessage] = []
    comments = 0
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                comments += 1
            elif ": " in line:
                key, value = line.split(": ", 1)
                fields[key] = value
        if "data" in fields:
            messages.append(SseMessage(fields.get("event", "message"), fields.get("id", ""),
                                       json.loads(fields["data"])))
    return messages, comments
