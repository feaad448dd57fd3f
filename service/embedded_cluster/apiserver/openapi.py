"""A minimal OpenAPI v3 discovery: enough for kubectl to learn that the server validates
fields itself (``fieldValidation`` on PATCH), so it skips client-side validation and never
needs /openapi/v2. The CRD schemas are included so ``kubectl explain`` has something to show."""

from __future__ import annotations

import hashlib
import json

from service.embedded_cluster.apiserver.discovery import Registry
from service.embedded_cluster.contracts import Obj, ResourceType

_QUERY_PARAMS = ("dryRun", "fieldManager", "fieldValidation", "force")


def _prefix(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _schema_name(rtype: ResourceType) -> str:
    reversed_group = ".".join(reversed(rtype.group.split("."))) if rtype.group else "io.k8s.api.core"
    return f"{reversed_group}.{rtype.version}.{rtype.kind}"


def _object_path(rtype: ResourceType) -> str:
    base = f"/{_prefix(rtype.group, rtype.version)}"
    scope = "/namespaces/{namespace}" if rtype.namespaced else ""
    return f"{base}{scope}/{rtype.plural}/{{name}}"


def group_version_document(registry: Registry, group: str, version: str) -> Obj | None:
    types = [t for t in [*registry.stored, *registry.reviews] if (t.group, t.version) == (group, version)]
    if not types:
        return None
    paths: Obj = {}
    schemas: Obj = {}
    for rtype in types:
        gvk = {"group": rtype.group, "version": rtype.version, "kind": rtype.kind}
        operation = {"operationId": f"patch{rtype.kind}", "x-kubernetes-group-version-kind": gvk,
                     "parameters": [{"name": name, "in": "query", "schema": {"type": "string"}}
                                    for name in _QUERY_PARAMS],
                     "responses": {"200": {"description": "OK"}}}
        paths[_object_path(rtype)] = {"patch": operation}
        if rtype.schema is not None:
            schemas[_schema_name(rtype)] = {**rtype.schema, "x-kubernetes-group-version-kind": [gvk]}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.30.0"}, "paths": paths,
            "components": {"schemas": schemas}}


def root_document(registry: Registry) -> Obj:
    paths: Obj = {}
    for group, versions in sorted(registry.group_versions().items()):
        for version in versions:
            document = group_version_document(registry, group, version)
            digest = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:32].upper()
            prefix = _prefix(group, version)
            paths[prefix] = {"serverRelativeURL": f"/openapi/v3/{prefix}?hash={digest}"}
    return {"paths": paths}
