"""``KubeClient``: the gateway's ``ClusterClient`` over kubernetes-asyncio.

It speaks only HTTP to an API server (a real cluster or the embedded one) and raises
nothing but ``core.errors.ApiError``. Reads (get/list) are retried a few times with
jittered backoff when the cluster is unavailable; writes are never retried blindly,
since a lost response may hide a write that happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import aiohttp.helpers
from yarl import URL

from service.cluster.config import load_configuration, load_kube_client
from service.cluster.errors import api_error_from_status, cluster_unreachable, watch_expired
from service.core.errors import ApiError, Code
from service.core.ports import ListResult, ResourceKind, WatchEvent

load_kube_client()   # before the library's imports below: only the modules they name are loaded
from kubernetes_asyncio.client.api.custom_objects_api import CustomObjectsApi  # noqa: E402
from kubernetes_asyncio.client.api_client import ApiClient  # noqa: E402
from kubernetes_asyncio.client.exceptions import ApiException  # noqa: E402

T = TypeVar("T")
Obj = dict[str, Any]

_WATCH_EVENT_TYPES = frozenset({"ADDED", "MODIFIED", "DELETED", "BOOKMARK"})
# Extra read time on top of the server-side watch timeout before we call the stream dead.
_WATCH_READ_MARGIN_SECONDS = 30.0
_MERGE_PATCH = "application/merge-patch+json"


def _header(headers: object, name: str) -> str | None:
    if headers is None:
        return None
    getter = getattr(headers, "get", None)
    if getter is None:
        return None
    value = getter(name)
    return str(value) if value is not None else None


class KubeClient:
    """Implements ``service.core.ports.ClusterClient``."""

    def __init__(self, api_client: ApiClient, *, request_timeout: float = 15.0, read_retries: int = 2,
                 retry_base_delay: float = 0.1) -> None:
        self._api_client = api_client
        self._custom = CustomObjectsApi(api_client)
        self._request_timeout = request_timeout
        self._read_retries = read_retries
        self._retry_base_delay = retry_base_delay

    # ------------------------------------------------------------ plumbing

    async def _call(self, kind: ResourceKind, name: str, namespace: str | None,
                    request: Callable[[], Awaitable[T]]) -> T:
        """Run one request, turning every failure into an ApiError (causes are not chained:
        they carry the cluster URL)."""
        try:
            return await request()
        except ApiException as exc:
            error = api_error_from_status(exc.status or 0, exc.body, kind=kind, name=name, namespace=namespace,
                                          retry_after_header=_header(exc.headers, "Retry-After"))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = cluster_unreachable(kind, type(exc).__name__, timed_out=isinstance(exc, TimeoutError))
        raise error

    async def _read(self, kind: ResourceKind, name: str, namespace: str | None,
                    request: Callable[[], Awaitable[T]]) -> T:
        """An idempotent read: retried on UNAVAILABLE with jittered backoff, except for bad
        credentials and timeouts (a slow cluster would only get more load, the caller more delay)."""
        for attempt in range(self._read_retries + 1):
            try:
                return await self._call(kind, name, namespace, request)
            except ApiError as error:
                retryable = (error.code is Code.UNAVAILABLE and error.reason != "CLUSTER_UNAUTHORIZED"
                             and error.metadata.get("failure") != "timeout")
                if not retryable or attempt == self._read_retries:
                    raise
                delay = self._retry_base_delay * (2 ** attempt) * random.uniform(0.5, 1.5)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _path_args(self, kind: ResourceKind, namespace: str | None) -> dict[str, Any]:
        args: dict[str, Any] = {"group": kind.group, "version": kind.version, "plural": kind.plural}
        if kind.namespaced and namespace:
            args["namespace"] = namespace
        return args

    def _scoped(self, kind: ResourceKind, namespace: str | None, namespaced_method: str) -> Callable[..., Any]:
        """The namespaced or the cluster-scoped variant of a CustomObjectsApi method
        (a namespaced kind with no namespace lists across all namespaces)."""
        if kind.namespaced and namespace:
            return getattr(self._custom, namespaced_method)  # type: ignore[no-any-return]
        return getattr(self._custom, namespaced_method.replace("namespaced", "cluster"))  # type: ignore[no-any-return]

    @staticmethod
    def _as_obj(value: object) -> Obj:
        if not isinstance(value, dict):
            raise ApiError(Code.UNAVAILABLE, "CLUSTER_BAD_RESPONSE", "the cluster answered with an unexpected body",
                           retry_after_seconds=1)
        return value

    # ------------------------------------------------------------ ClusterClient

    async def create(self, kind: ResourceKind, namespace: str, body: Obj) -> Obj:
        name = str((body.get("metadata") or {}).get("name") or "")
        method = self._scoped(kind, namespace, "create_namespaced_custom_object")
        result = await self._call(kind, name, namespace, lambda: method(
            **self._path_args(kind, namespace), body=body, _request_timeout=self._request_timeout))
        return self._as_obj(result)

    async def get(self, kind: ResourceKind, namespace: str, name: str) -> Obj:
        if not kind.group:
            return await self._get_core(kind, namespace, name)
        method = self._scoped(kind, namespace, "get_namespaced_custom_object")
        result = await self._read(kind, name, namespace, lambda: method(
            **self._path_args(kind, namespace), name=name, _request_timeout=self._request_timeout))
        return self._as_obj(result)

    async def _get_core(self, kind: ResourceKind, namespace: str, name: str) -> Obj:
        """A core-group object (a Secret): CustomObjectsApi only builds ``/apis/<group>`` paths."""
        scope = f"/namespaces/{namespace}" if kind.namespaced else ""
        path = f"/api/{kind.version}{scope}/{kind.plural}/{{name}}"
        result = await self._read(kind, name, namespace, lambda: self._api_client.call_api(
            path, "GET", {"name": name}, [], {"Accept": "application/json"},
            response_types_map={200: "object"}, auth_settings=["BearerToken"], _return_http_data_only=True,
            _request_timeout=self._request_timeout))
        return self._as_obj(result)

    async def list(self, kind: ResourceKind, namespace: str, *, label_selector: str = "",
                   limit: int = 0, continue_token: str = "") -> ListResult:
        method = self._scoped(kind, namespace, "list_namespaced_custom_object")
        params: dict[str, Any] = {}
        if label_selector:
            params["label_selector"] = label_selector
        if limit > 0:
            params["limit"] = limit
        if continue_token:
            params["_continue"] = continue_token
        result = self._as_obj(await self._read(kind, "", namespace, lambda: method(
            **self._path_args(kind, namespace), **params, _request_timeout=self._request_timeout)))
        items = result.get("items")
        raw_meta = result.get("metadata")
        meta: Obj = raw_meta if isinstance(raw_meta, dict) else {}
        return ListResult(
            items=[item for item in items if isinstance(item, dict)] if isinstance(items, list) else [],
            continue_token=str(meta.get("continue") or ""),
            resource_version=str(meta.get("resourceVersion") or ""),
        )

    async def delete(self, kind: ResourceKind, namespace: str, name: str) -> Obj:
        method = self._scoped(kind, namespace, "delete_namespaced_custom_object")
        result = await self._call(kind, name, namespace, lambda: method(
            **self._path_args(kind, namespace), name=name, propagation_policy="Background",
            _request_timeout=self._request_timeout))
        return self._as_obj(result)

    async def patch_merge(self, kind: ResourceKind, namespace: str, name: str, patch: Obj) -> Obj:
        method = self._scoped(kind, namespace, "patch_namespaced_custom_object")
        result = await self._call(kind, name, namespace, lambda: method(
            **self._path_args(kind, namespace), name=name, body=patch, _content_type=_MERGE_PATCH,
            _request_timeout=self._request_timeout))
        return self._as_obj(result)

    async def replace(self, kind: ResourceKind, namespace: str, name: str, body: Obj) -> Obj:
        """PUT the whole object; ``metadata.resourceVersion`` makes it a compare-and-swap (409 ABORTED)."""
        method = self._scoped(kind, namespace, "replace_namespaced_custom_object")
        result = await self._call(kind, name, namespace, lambda: method(
            **self._path_args(kind, namespace), name=name, body=body, _request_timeout=self._request_timeout))
        return self._as_obj(result)

    async def ping(self, kind: ResourceKind) -> None:
        """Readiness: the API server answers discovery for ``kind``'s group (one request, no retry)."""
        await self._call(kind, "", None, lambda: self._custom.get_api_resources(
            kind.group, kind.version, _request_timeout=self._request_timeout))

    def watch(self, kind: ResourceKind, namespace: str | None, resource_version: str,
              *, timeout_seconds: int = 300) -> AsyncIterator[WatchEvent]:
        return self._watch(kind, namespace, resource_version, timeout_seconds)

    async def _open_watch(self, kind: ResourceKind, namespace: str | None, resource_version: str,
                          timeout_seconds: int) -> aiohttp.ClientResponse:
        method = self._scoped(kind, namespace, "list_namespaced_custom_object")
        params: dict[str, Any] = {"watch": True, "allow_watch_bookmarks": True, "timeout_seconds": timeout_seconds}
        if resource_version:
            params["resource_version"] = resource_version
        timeout = aiohttp.ClientTimeout(connect=self._request_timeout, sock_connect=self._request_timeout,
                                        sock_read=timeout_seconds + _WATCH_READ_MARGIN_SECONDS)
        response: aiohttp.ClientResponse = await self._call(kind, "", namespace, lambda: method(
            **self._path_args(kind, namespace), **params, _preload_content=False, _request_timeout=timeout))
        if response.status != 200:
            try:
                body = await response.read()
            except (aiohttp.ClientError, TimeoutError):
                body = b""
            finally:
                response.close()
            if response.status == 410:
                raise watch_expired(kind)
            raise api_error_from_status(response.status, body, kind=kind, namespace=namespace,
                                        retry_after_header=response.headers.get("Retry-After"))
        return response

    async def _watch(self, kind: ResourceKind, namespace: str | None, resource_version: str,
                     timeout_seconds: int) -> AsyncIterator[WatchEvent]:
        response = await self._open_watch(kind, namespace, resource_version, timeout_seconds)
        try:
            while True:
                try:
                    line = await response.content.readline()
                except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
                    raise cluster_unreachable(kind, type(exc).__name__,
                                              timed_out=isinstance(exc, TimeoutError)) from None
                if not line:
                    return  # the server ended the watch (its timeout): the caller watches again
                event = _parse_watch_line(kind, line)
                if event is not None:
                    yield event
        finally:
            # Never hand a half-read stream back to the connection pool.
            response.close()

    async def authorization(self) -> str | None:
        """The Authorization header the cluster's credentials give (refreshed when they
        expire), for HTTP the cluster serves outside its API (DataExport block data)."""
        value = await self._api_client.configuration.get_api_key_with_prefix("BearerToken")
        return str(value) if value else None

    def client_certificate(self) -> tuple[str, str] | None:
        """(certificate file, key file) when the kubeconfig authenticates with one."""
        config = self._api_client.configuration
        return (str(config.cert_file), str(config.key_file)) if config.cert_file and config.key_file else None

    async def close(self) -> None:
        await self._api_client.close()


def _parse_watch_line(kind: ResourceKind, line: bytes) -> WatchEvent | None:
    """One line of a watch stream; ERROR events raise, junk and unknown types are skipped."""
    line = line.strip()
    if not line:
        return None
    try:
        # Not orjson: it reads an integer past 64 bits as a float, silently.
        frame = json.loads(line)
    except ValueError:
        return None
    if not isinstance(frame, dict) or not isinstance(frame.get("object"), dict):
        return None
    event_type, obj = frame.get("type"), frame["object"]
    if event_type == "ERROR":
        code = obj.get("code")
        if code == 410:
            raise watch_expired(kind)
        raise api_error_from_status(code if isinstance(code, int) else 500, obj, kind=kind)
    if event_type not in _WATCH_EVENT_TYPES:
        return None
    return WatchEvent(type=str(event_type), object=obj)


async def connect_cluster(*, kubeconfig: Path | None = None, context: str | None = None, in_cluster: bool = False,
                          request_timeout: float = 15.0, read_retries: int = 2,
                          retry_base_delay: float = 0.1,
                          trace_configs: Sequence[aiohttp.TraceConfig] = ()) -> KubeClient:
    """A client for the cluster named by a kubeconfig (or the pod's in-cluster config);
    ``trace_configs`` (frozen) see each of its HTTP requests (tracing)."""
    configuration = await load_configuration(kubeconfig=kubeconfig, context=context, in_cluster=in_cluster)
    api_client = ApiClient(configuration=configuration)
    _environment_read_once(api_client)
    # The library builds its session itself; aiohttp reads the list on every request.
    api_client.rest_client.pool_manager._trace_configs.extend(trace_configs)
    return KubeClient(api_client, request_timeout=request_timeout, read_retries=read_retries,
                      retry_base_delay=retry_base_delay)


def _environment_read_once(api_client: ApiClient) -> None:
    """The library's HTTP session trusts the environment, and aiohttp then looks up the
    proxy variables (in a worker thread) and ~/.netrc on every request: a thread hand-over
    per cluster call. The proxy for the cluster's URL is decided once, here, instead."""
    rest = api_client.rest_client
    if not rest.proxy:
        with contextlib.suppress(LookupError, ValueError):
            proxy, _ = aiohttp.helpers.get_env_proxy_for_url(URL(api_client.configuration.host or ""))
            rest.proxy = str(proxy)
    rest.pool_manager._trust_env = False  # aiohttp has no setter; read once above
