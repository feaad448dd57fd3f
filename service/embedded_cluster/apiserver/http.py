"""The Kubernetes API over aiohttp: discovery, CRUD, patch, status, watch, tables, auth."""

from __future__ import annotations

import copy
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import yaml
from aiohttp import web

from service.embedded_cluster.apiserver.auth import Authority, User
from service.embedded_cluster.apiserver.discovery import SERVER_VERSION, Registry
from service.embedded_cluster.apiserver.faults import FaultInjector
from service.embedded_cluster.apiserver.openapi import group_version_document, root_document
from service.embedded_cluster.apiserver.patch import json_patch, merge_patch
from service.embedded_cluster.apiserver.routing import (
    ContinueToken,
    Target,
    bool_param,
    check_body,
    decode_json,
    dry_run_param,
    gone,
    int_param,
    parse_target,
    table_version,
)
from service.embedded_cluster.apiserver.selectors import field_matcher, label_matcher
from service.embedded_cluster.apiserver.status import bad_request, error_response, json_response, not_found_path
from service.embedded_cluster.apiserver.store import MemoryStore
from service.embedded_cluster.apiserver.table import TableConverter, include_object_param
from service.embedded_cluster.apiserver.watch import DEFAULT_TIMEOUT, WatchRequest, WatchStream
from service.embedded_cluster.contracts import Obj, ResourceType, StatusCause, StatusError

log = logging.getLogger(__name__)
USER_KEY = web.RequestKey("embedded_cluster_user", User)

MAX_BODY = 3 * 1024 * 1024          # the real API server's request size limit
UNAUTHENTICATED_PREFIXES = ("/healthz", "/livez", "/readyz", "/version")
JSON_TYPES = ("application/json", "")
PATCH_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json",
               "application/json-patch+json", "application/apply-patch+yaml")


@dataclass
class ApiSettings:
    bookmark_interval: float = 30.0
    watch_queue: int = 1000


def _not_found(rtype: ResourceType, name: str) -> StatusError:
    return StatusError(404, "NotFound", f'{rtype.key} "{name}" not found', kind=rtype.plural, name=name,
                       group=rtype.group)


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _yaml_document(body: bytes) -> Any:
    """Parse an apply-patch body; YAML aliases are refused (they can expand without bound)."""
    try:
        text = body.decode("utf-8")
        if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text)):
            raise bad_request("YAML aliases are not allowed in an apply patch")
        return yaml.safe_load(text)
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError):
        raise bad_request("the apply patch is not valid YAML") from None


class ApiServer:
    def __init__(self, store: MemoryStore, registry: Registry, authority: Authority, faults: FaultInjector,
                 settings: ApiSettings | None = None) -> None:
        self.store = store
        self.registry = registry
        self.authority = authority
        self.faults = faults
        self.settings = settings or ApiSettings()
        self.server_address = ""

    # ----- application ---------------------------------------------------------------

    def build_app(self, extra_routes: Iterable[web.AbstractRouteDef] = (), exempt_prefixes: tuple[str, ...] = ()
                  ) -> web.Application:
        exempt = (*UNAUTHENTICATED_PREFIXES, *exempt_prefixes)

        @web.middleware
        async def guard(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                        ) -> web.StreamResponse:
            try:
                if not request.path.startswith(exempt):
                    user = self.authority.authenticate(_bearer(request))
                    if user is None:
                        raise StatusError(401, "Unauthorized", "Unauthorized")
                    request[USER_KEY] = user
                return await handler(request)
            except StatusError as error:
                return error_response(error)
            except web.HTTPRequestEntityTooLarge:
                return error_response(StatusError(413, "RequestEntityTooLarge", "the request body is too large"))
            except web.HTTPMethodNotAllowed:
                return error_response(StatusError(405, "MethodNotAllowed", "the server does not allow this method "
                                                  "on the requested resource"))
            except web.HTTPNotFound:
                return error_response(not_found_path())
            except web.HTTPException:
                raise
            except Exception:
                # A bug, never the client's doing: log it, answer with a Status rather than a bare 500 page.
                log.exception("internal error serving %s %s", request.method, request.path)
                return error_response(StatusError(500, "InternalError", "an internal error occurred"))

        app = web.Application(middlewares=[guard], client_max_size=MAX_BODY)
        app.router.add_get("/version", self.version)
        app.router.add_get("/healthz", self.health)
        app.router.add_get("/livez", self.health)
        app.router.add_get("/readyz", self.health)
        app.router.add_get("/api", self.api_versions)
        app.router.add_get("/api/v1", self.core_resources)
        app.router.add_get("/apis", self.api_groups)
        app.router.add_get("/apis/{group}", self.api_group)
        app.router.add_get("/apis/{group}/{version}", self.group_resources)
        app.router.add_get("/openapi/v3", self.openapi_root)
        app.router.add_get("/openapi/v3/api/{version}", self.openapi_core)
        app.router.add_get("/openapi/v3/apis/{group}/{version}", self.openapi_group)
        app.router.add_route("*", "/api/v1/{tail:.+}", self.core_request)
        app.router.add_route("*", "/apis/{group}/{version}/{tail:.+}", self.group_request)
        app.add_routes(list(extra_routes))
        return app

    # ----- discovery -----------------------------------------------------------------

    async def version(self, request: web.Request) -> web.Response:
        return json_response(SERVER_VERSION)

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def api_versions(self, request: web.Request) -> web.Response:
        return json_response(self.registry.api_versions(self.server_address or request.host))

    async def api_groups(self, request: web.Request) -> web.Response:
        return json_response(self.registry.api_group_list())

    async def api_group(self, request: web.Request) -> web.Response:
        group = self.registry.api_group(request.match_info["group"])
        if group is None:
            raise not_found_path()
        return json_response(group)

    async def core_resources(self, request: web.Request) -> web.Response:
        return self._resource_list("", "v1")

    async def group_resources(self, request: web.Request) -> web.Response:
        return self._resource_list(request.match_info["group"], request.match_info["version"])

    def _resource_list(self, group: str, version: str) -> web.Response:
        resources = self.registry.resource_list(group, version) if group or version == "v1" else None
        if resources is None:
            raise not_found_path()
        return json_response(resources)

    async def openapi_root(self, request: web.Request) -> web.Response:
        return json_response(root_document(self.registry))

    async def openapi_core(self, request: web.Request) -> web.Response:
        return self._openapi("", request.match_info["version"])

    async def openapi_group(self, request: web.Request) -> web.Response:
        return self._openapi(request.match_info["group"], request.match_info["version"])

    def _openapi(self, group: str, version: str) -> web.Response:
        document = group_version_document(self.registry, group, version)
        if document is None:
            raise not_found_path()
        return json_response(document)

    # ----- resources -----------------------------------------------------------------

    async def core_request(self, request: web.Request) -> web.StreamResponse:
        return await self._dispatch(request, parse_target(self.registry, "", "v1", request.match_info["tail"]))

    async def group_request(self, request: web.Request) -> web.StreamResponse:
        info = request.match_info
        return await self._dispatch(request, parse_target(self.registry, info["group"], info["version"],
                                                          info["tail"]))

    def _verb(self, request: web.Request, target: Target) -> str:
        method = request.method
        if self.registry.is_review(target.rtype):
            if method != "POST" or target.name:
                raise StatusError(405, "MethodNotAllowed", f"{target.rtype.kind} supports only create")
            return "create"
        if method == "GET":
            if target.name:
                return "get"
            return "watch" if target.watch_path or bool_param(request.query, "watch") else "list"
        verbs = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
        verb = verbs.get(method)
        if verb == "delete":
            return "delete" if target.name else "deletecollection"
        # create goes to a collection; update and patch to one object
        if verb is None or (verb == "create") == bool(target.name):
            raise StatusError(405, "MethodNotAllowed", f"{method} is not allowed on this path")
        return verb

    async def _dispatch(self, request: web.Request, target: Target) -> web.StreamResponse:
        verb = self._verb(request, target)
        user = request[USER_KEY]
        self.authority.authorize(user, verb, target.rtype, target.namespace, target.name, target.subresource)
        await self.faults.before(verb, target.rtype.plural, target.rtype.key)
        if self.registry.is_review(target.rtype):
            return await self._review(request, target)
        handlers: dict[str, Callable[[web.Request, Target], Awaitable[web.StreamResponse]]] = {
            "get": self._get, "list": self._list, "watch": self._watch, "create": self._create,
            "update": self._update, "patch": self._patch, "delete": self._delete,
            "deletecollection": self._delete_collection}
        return await handlers[verb](request, target)

    async def _body(self, request: web.Request, allowed: tuple[str, ...] = JSON_TYPES) -> Any:
        if request.content_type not in allowed and not (request.content_type == "application/octet-stream"
                                                        and not request.can_read_body):
            raise StatusError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - "
                              f"accepted media types include: {', '.join(t for t in allowed if t)}")
        return decode_json(await request.read())

    def _respond(self, request: web.Request, target: Target, obj: Obj, status: int = 200) -> web.Response:
        table_api = table_version(request.headers.get("Accept", ""))
        if table_api is None:
            return json_response(obj, status=status)
        include = include_object_param(request.query.get("includeObject"))
        table = TableConverter(target.rtype).table([obj], include, {"resourceVersion": obj["metadata"].get(
            "resourceVersion", "")}, table_api)
        return json_response(table, status=status)

    async def _review(self, request: web.Request, target: Target) -> web.Response:
        body = check_body(target.rtype, await self._body(request), "", "")
        answer = (self.authority.token_review(body) if target.rtype.plural == "tokenreviews"
                  else self.authority.subject_access_review(body))
        return json_response(answer, status=201)

    async def _get(self, request: web.Request, target: Target) -> web.Response:
        obj = self.store.get(target.rtype.key, target.namespace or None, target.name)
        if obj is None:
            raise _not_found(target.rtype, target.name)
        return self._respond(request, target, obj)

    def _selected(self, request: web.Request, target: Target) -> tuple[Callable[[Obj], bool], bool]:
        label_selector = request.query.get("labelSelector", "")
        field_selector = request.query.get("fieldSelector", "")
        by_label, by_field = label_matcher(label_selector), field_matcher(field_selector)
        return (lambda obj: by_label(obj) and by_field(obj)), bool(label_selector.strip() or field_selector.strip())

    async def _list(self, request: web.Request, target: Target) -> web.Response:
        rtype = target.rtype
        matches, _ = self._selected(request, target)
        limit = int_param(request.query, "limit", minimum=0) or 0
        items = [obj for obj in self.store.list(rtype.key, target.namespace or None) if matches(obj)]
        list_rv = self.store.resource_version
        token_text = request.query.get("continue", "")
        if token_text:
            token = ContinueToken.decode(token_text)
            if token.resource_version < self.store.compacted_resource_version:
                raise gone("The provided continue parameter is too old to display a consistent list result. "
                           "You can start a new list without the continue parameter.")
            list_rv = token.resource_version
            items = [obj for obj in items if (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
                     > token.after]
        meta: Obj = {"resourceVersion": str(list_rv)}
        if limit and len(items) > limit:
            remaining = len(items) - limit
            items = items[:limit]
            last = items[-1]["metadata"]
            meta["continue"] = ContinueToken(list_rv, (last.get("namespace", ""), last["name"])).encode()
            meta["remainingItemCount"] = remaining
        table_api = table_version(request.headers.get("Accept", ""))
        if table_api is not None:
            include = include_object_param(request.query.get("includeObject"))
            return json_response(TableConverter(rtype).table(items, include, meta, table_api))
        return json_response({"apiVersion": rtype.api_version, "kind": rtype.list_kind or f"{rtype.kind}List",
                              "metadata": meta, "items": items})

    async def _watch(self, request: web.Request, target: Target) -> web.StreamResponse:
        matches, filtered = self._selected(request, target)
        timeout = int_param(request.query, "timeoutSeconds", minimum=0)
        table_api = table_version(request.headers.get("Accept", ""))
        watch_request = WatchRequest(
            rtype=target.rtype, namespace=target.namespace, matches=matches, filtered=filtered,
            resource_version=request.query.get("resourceVersion", ""),
            timeout=float(timeout) if timeout else DEFAULT_TIMEOUT,
            bookmarks=bool_param(request.query, "allowWatchBookmarks"),
            table=TableConverter(target.rtype) if table_api else None, table_api_version=table_api or "",
            include_object=include_object_param(request.query.get("includeObject")))
        stream = WatchStream(self.store, self.faults, watch_request, queue_size=self.settings.watch_queue,
                             bookmark_interval=self.settings.bookmark_interval)
        return await stream.serve(request)

    async def _create(self, request: web.Request, target: Target) -> web.Response:
        dry_run = dry_run_param(request.query.getall("dryRun", []))
        body = check_body(target.rtype, await self._body(request), target.namespace, "")
        if target.rtype.has_status:
            body.pop("status", None)   # the status subresource is the only way to write status
        created = await self.store.create(target.rtype.key, body, dry_run=dry_run)
        return self._respond(request, target, created, status=201)

    async def _write(self, target: Target, obj: Obj, *, dry_run: bool) -> Obj:
        if target.subresource == "status":
            return await self.store.update_status(target.rtype.key, obj, dry_run=dry_run)
        return await self.store.update(target.rtype.key, obj, dry_run=dry_run)

    async def _update(self, request: web.Request, target: Target) -> web.Response:
        dry_run = dry_run_param(request.query.getall("dryRun", []))
        body = check_body(target.rtype, await self._body(request), target.namespace, target.name)
        if target.rtype.schema is not None and not body["metadata"].get("resourceVersion"):
            # Custom resources do not allow unconditional updates (the CRD registry's rule).
            raise StatusError(422, "Invalid", f'{target.rtype.kind}.{target.rtype.group} "{target.name}" is invalid: '
                              "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
                              [StatusCause("FieldValueInvalid", "Invalid value: 0x0: must be specified for an update",
                                           "metadata.resourceVersion")],
                              kind=target.rtype.kind, name=target.name, group=target.rtype.group)
        return self._respond(request, target, await self._write(target, body, dry_run=dry_run))

    async def _patch(self, request: web.Request, target: Target) -> web.Response:
        dry_run = dry_run_param(request.query.getall("dryRun", []))
        kind = request.content_type
        if kind not in PATCH_TYPES:
            raise StatusError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - "
                              f"accepted media types include: {', '.join(PATCH_TYPES)}")
        raw = await request.read()
        current = self.store.get(target.rtype.key, target.namespace or None, target.name)
        if kind == "application/apply-patch+yaml":
            return await self._apply(request, target, current, _yaml_document(raw), dry_run=dry_run)
        if current is None:
            raise _not_found(target.rtype, target.name)
        document = decode_json(raw)
        if kind == "application/json-patch+json":
            patched = json_patch(current, document)
        else:
            if not isinstance(document, dict):
                raise bad_request("a merge patch must be a JSON object")
            patched = merge_patch(current, document)
        if not isinstance(patched, dict):
            raise StatusError(422, "Invalid", "the patched object is not a JSON object")
        patched = check_body(target.rtype, patched, target.namespace, target.name)
        return self._respond(request, target, await self._write(target, patched, dry_run=dry_run))

    async def _apply(self, request: web.Request, target: Target, current: Obj | None, document: Any, *,
                     dry_run: bool) -> web.Response:
        applied = check_body(target.rtype, document, target.namespace, target.name)
        if current is None:
            if target.subresource:
                raise _not_found(target.rtype, target.name)
            created = await self.store.create(target.rtype.key, applied, dry_run=dry_run)
            return self._respond(request, target, created, status=201)
        applied["metadata"].pop("resourceVersion", None)
        merged = merge_patch(current, applied)
        return self._respond(request, target, await self._write(target, merged, dry_run=dry_run))

    async def _delete_options(self, request: web.Request) -> tuple[str, bool, str, str]:
        options: Any = {}
        if request.can_read_body:
            raw = await request.read()
            options = decode_json(raw) if raw.strip() else {}
            if not isinstance(options, dict):
                raise bad_request("DeleteOptions must be a JSON object")
        propagation = request.query.get("propagationPolicy") or options.get("propagationPolicy") or "Background"
        if propagation not in ("Orphan", "Background", "Foreground"):
            raise bad_request(f"propagationPolicy: Unsupported value: {propagation!r}")
        body_dry_run = options.get("dryRun") or []
        if not isinstance(body_dry_run, list):
            raise bad_request("dryRun must be a list")
        dry_run = dry_run_param([*request.query.getall("dryRun", []), *map(str, body_dry_run)])
        preconditions = options.get("preconditions") or {}
        if not isinstance(preconditions, dict):
            raise bad_request("preconditions must be an object")
        return propagation, dry_run, str(preconditions.get("uid") or ""), str(
            preconditions.get("resourceVersion") or "")

    async def _delete(self, request: web.Request, target: Target) -> web.Response:
        if target.subresource:
            raise StatusError(405, "MethodNotAllowed", "the status subresource cannot be deleted")
        propagation, dry_run, uid, rv = await self._delete_options(request)
        deleted = await self.store.delete(target.rtype.key, target.namespace or None, target.name,
                                          propagation=propagation, dry_run=dry_run, precondition_uid=uid,
                                          precondition_rv=rv)
        if deleted is None:
            raise _not_found(target.rtype, target.name)
        return json_response(deleted)

    async def _delete_collection(self, request: web.Request, target: Target) -> web.Response:
        matches, _ = self._selected(request, target)
        propagation, dry_run, _, _ = await self._delete_options(request)
        deleted: list[Obj] = []
        for obj in self.store.list(target.rtype.key, target.namespace or None):
            if matches(obj):
                meta = obj["metadata"]
                gone_obj = await self.store.delete(target.rtype.key, meta.get("namespace"), meta["name"],
                                                   propagation=propagation, dry_run=dry_run)
                if gone_obj is not None:
                    deleted.append(copy.deepcopy(gone_obj))
        rtype = target.rtype
        return json_response({"apiVersion": rtype.api_version, "kind": rtype.list_kind or f"{rtype.kind}List",
                              "metadata": {"resourceVersion": str(self.store.resource_version)}, "items": deleted})
