"""Turning a request URL, query and headers into what the API server should do."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from multidict import MultiMapping

from service.embedded_cluster.apiserver.discovery import Registry
from service.embedded_cluster.apiserver.status import bad_request, not_found_path
from service.embedded_cluster.contracts import Obj, ResourceType, StatusError

MAX_JSON_DEPTH = 100


@dataclass(frozen=True)
class Target:
    rtype: ResourceType
    namespace: str          # "" for cluster-scoped types and cross-namespace collections
    name: str               # "" for a collection
    subresource: str        # "" or "status"
    watch_path: bool        # the legacy /watch/ prefix


def parse_target(registry: Registry, group: str, version: str, tail: str) -> Target:
    segments = tail.split("/")
    if any(not segment for segment in segments):
        raise not_found_path()
    watch_path = segments[0] == "watch"
    if watch_path:
        segments = segments[1:]
    namespace = ""
    if len(segments) >= 3 and segments[0] == "namespaces":
        scoped = registry.lookup(group, version, segments[2])
        if scoped is not None and scoped.namespaced:
            namespace, segments = segments[1], segments[2:]
    if not segments or len(segments) > 3:
        raise not_found_path()
    rtype = registry.lookup(group, version, segments[0])
    if rtype is None:
        raise not_found_path()
    name = segments[1] if len(segments) > 1 else ""
    subresource = segments[2] if len(segments) > 2 else ""
    if rtype.namespaced and name and not namespace:
        raise not_found_path()
    if subresource and (subresource != "status" or not rtype.has_status):
        raise not_found_path()
    return Target(rtype, namespace, name, subresource, watch_path)


def bool_param(query: MultiMapping[str], name: str) -> bool:
    value = query.get(name, "")
    if value in ("", "0", "false", "False"):
        return False
    if value in ("1", "true", "True"):
        return True
    raise bad_request(f"invalid value for {name}: {value!r}")


def int_param(query: MultiMapping[str], name: str, *, minimum: int = 0) -> int | None:
    value = query.get(name)
    if value is None or value == "":
        return None
    if not value.lstrip("-").isdigit() or len(value) > 18 or int(value) < minimum:
        raise bad_request(f"invalid value for {name}: {value!r}")
    return int(value)


def dry_run_param(values: list[str]) -> bool:
    for value in values:
        if value != "All":
            raise bad_request(f"dryRun: Unsupported value: {value!r}: supported values: \"All\"")
    return bool(values)


def table_version(accept: str) -> str | None:
    """The meta.k8s.io Table version the client asks for first, or None for plain JSON."""
    for media_range in accept.split(","):
        parts = [part.strip() for part in media_range.split(";")]
        params = dict(part.split("=", 1) for part in parts[1:] if "=" in part)
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io" and params.get("v") in ("v1", "v1beta1"):
            return f"meta.k8s.io/{params['v']}"
        if "as" not in params and parts[0] in ("application/json", "*/*", "application/*", ""):
            return None
    return None


def _reject_constant(value: str) -> Any:
    raise ValueError(f"{value} is not valid JSON")


def _depth(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return False
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)
    return True


def decode_json(body: bytes) -> Any:
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as error:
        raise bad_request(f"the request body is not valid JSON: {str(error)[:200]}") from None
    if not _depth(value, MAX_JSON_DEPTH):
        raise bad_request("the request body is nested too deeply")
    return value


def check_body(rtype: ResourceType, body: Any, namespace: str, name: str) -> Obj:
    """The object a client sent: its apiVersion/kind must match the URL, and so must name and namespace."""
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    kind, api_version = body.get("kind"), body.get("apiVersion")
    if not kind or not isinstance(kind, str):
        raise bad_request("Object 'Kind' is missing in the request body")
    if api_version != rtype.api_version or kind != rtype.kind:
        raise bad_request(f"the API version in the data ({api_version}) and kind ({kind}) do not match the "
                          f"expected API version ({rtype.api_version}) and kind ({rtype.kind})")
    meta = body.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise bad_request("metadata must be an object")
    if rtype.namespaced:
        if meta.get("namespace") not in (None, "", namespace):
            raise bad_request("the namespace of the provided object does not match the namespace sent on the "
                              "request")
        meta["namespace"] = namespace
    if name:
        if meta.get("name") not in (None, "", name):
            raise bad_request(f"the name of the object ({meta.get('name')}) does not match the name on the URL "
                              f"({name})")
        meta["name"] = name
    return body


@dataclass(frozen=True)
class ContinueToken:
    resource_version: int
    after: tuple[str, str]     # (namespace, name) of the last item returned

    def encode(self) -> str:
        raw = json.dumps({"rv": self.resource_version, "after": list(self.after)}).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> ContinueToken:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            data = json.loads(raw)
            rv, after = data["rv"], data["after"]
            if not isinstance(rv, int) or not (isinstance(after, list) and len(after) == 2
                                               and all(isinstance(part, str) for part in after)):
                raise ValueError("malformed")
        except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
            raise bad_request("continue key is not valid") from None
        return cls(rv, (after[0], after[1]))


def gone(message: str) -> StatusError:
    return StatusError(410, "Expired", message)
