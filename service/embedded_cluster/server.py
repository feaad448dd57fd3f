"""The embedded cluster in-process: API server, simulated controllers, demo seed.

Policy file (YAML), for users other than the generated admin::

    users:
      - {name: alice, token: "alice-secret-token", groups: [dev]}
    rules:
      - subjects: ["alice", "group:dev"]
        namespaces: ["demo"]                 # or ["*"]
        verbs: ["get", "list", "watch"]      # or ["*"]
        resources: ["virtualdisksnapshots"]  # plurals, "plural/status", or ["*"]
"""

from __future__ import annotations

import base64
import logging
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from aiohttp import web

from service.embedded_cluster.apiserver.auth import Authority, load_policy
from service.embedded_cluster.apiserver.builtin_types import BUILTIN_TYPES, REVIEW_TYPES
from service.embedded_cluster.apiserver.discovery import Registry
from service.embedded_cluster.apiserver.faults import FaultInjector
from service.embedded_cluster.apiserver.http import ApiServer, ApiSettings
from service.embedded_cluster.apiserver.store import MemoryStore
from service.embedded_cluster.apiserver.tls import generate
from service.embedded_cluster.controllers import ControllerManager, ControllerSettings
from service.embedded_cluster.controllers.content import MAX_CHUNK
from service.embedded_cluster.controllers.resources import DATAEXPORT
from service.embedded_cluster.controllers.seed import seed_demo
from service.embedded_cluster.controllers.settings import DEFAULT_EXPORT_CHUNK
from service.embedded_cluster.schema import SchemaAdmission, load_resource_types

log = logging.getLogger(__name__)

CONTEXT_NAME = "embedded"
EXPORTER_PREFIX = "/dataexport/"


@dataclass
class EmbeddedClusterConfig:
    host: str = "127.0.0.1"
    port: int = 0                 # 0: ephemeral
    tls: bool = False             # True: generate a CA + serving cert and serve HTTPS
    step_delay: float = 0.0       # seconds per simulated controller step; 0 in tests
    seed_demo: bool = True
    admin_token: str | None = None    # generated when None
    policy_path: Path | None = None   # static users/tokens/groups + per-namespace verbs
    watch_history: int = 1000
    bookmark_interval: float = 30.0
    run_controllers: bool = True      # False: a bare API server (tests of API semantics alone)
    export_module: bool = True        # False: the DataExport module is disabled (no CRD, no exporter)
    export_chunk: int = DEFAULT_EXPORT_CHUNK   # bytes per write of the exporter (see its measurement)

    def __post_init__(self) -> None:
        if not 0 < self.export_chunk <= MAX_CHUNK:
            raise ValueError(f"export_chunk must be between 1 and {MAX_CHUNK} bytes")


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


class EmbeddedCluster:
    def __init__(self, config: EmbeddedClusterConfig | None = None) -> None:
        self.config = config or EmbeddedClusterConfig()
        self.admin_token = self.config.admin_token or secrets.token_urlsafe(32)
        self.url = ""
        self.ca_pem: bytes | None = None
        self.store: MemoryStore
        self.faults: FaultInjector
        self._runner: web.AppRunner | None = None
        self._manager: ControllerManager | None = None

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()   # never leave a listening socket or running controllers behind
            raise

    async def _start(self) -> None:
        config = self.config
        authority = Authority(self.admin_token, load_policy(config.policy_path))
        # Without the module its CRD is not installed: the API answers 404 and discovery omits it.
        crd_types = [t for t in load_resource_types() if config.export_module or t.key != DATAEXPORT]
        self.store = MemoryStore([*BUILTIN_TYPES, *crd_types], SchemaAdmission(),
                                 watch_history=config.watch_history)
        self.faults = FaultInjector(compact=self.store.compact)
        registry = Registry(self.store.types, REVIEW_TYPES)
        api = ApiServer(self.store, registry, authority, self.faults,
                        ApiSettings(bookmark_interval=config.bookmark_interval, watch_queue=config.watch_history))

        family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((config.host, config.port))
        except OSError:
            sock.close()
            raise
        port = sock.getsockname()[1]
        ssl_context = None
        if config.tls:
            certificate = generate([config.host, _url_host(config.host).strip("[]")])
            self.ca_pem = certificate.ca_pem
            ssl_context = certificate.server_context()
        self.url = f"{'https' if config.tls else 'http'}://{_url_host(config.host)}:{port}"
        api.server_address = f"{_url_host(config.host)}:{port}"

        if config.run_controllers:
            self._manager = ControllerManager(self.store, ControllerSettings(
                step_delay=config.step_delay, base_url=self.url, authenticate=authority.username,
                export_chunk=config.export_chunk, export_module=config.export_module, faults=self.faults,
                ca_pem=self.ca_pem))
        routes = self._manager.exporter_routes() if self._manager is not None else []
        # The exporter checks tokens itself; without it, its paths are ordinary (authenticated) 404s.
        app = api.build_app(routes, exempt_prefixes=(EXPORTER_PREFIX,) if routes else ())
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.SockSite(self._runner, sock, ssl_context=ssl_context).start()
        if self._manager is not None:
            await self._manager.start()
        if config.seed_demo:
            await seed_demo(self.store)
        log.info("embedded cluster serving at %s", self.url)

    async def stop(self) -> None:
        if self._runner is None:
            return
        self.faults.drop_watches()
        if self._manager is not None:
            await self._manager.stop()
            self._manager = None
        await self._runner.cleanup()
        self._runner = None

    async def __aenter__(self) -> EmbeddedCluster:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.stop()

    def kubeconfig(self, *, token: str | None = None) -> dict[str, Any]:
        cluster: dict[str, Any] = {"server": self.url}
        if self.ca_pem is not None:
            cluster["certificate-authority-data"] = base64.b64encode(self.ca_pem).decode()
        return {"apiVersion": "v1", "kind": "Config", "preferences": {},
                "clusters": [{"name": CONTEXT_NAME, "cluster": cluster}],
                "users": [{"name": CONTEXT_NAME, "user": {"token": token or self.admin_token}}],
                "contexts": [{"name": CONTEXT_NAME, "context": {"cluster": CONTEXT_NAME, "user": CONTEXT_NAME}}],
                "current-context": CONTEXT_NAME}

    def write_kubeconfig(self, path: Path, *, token: str | None = None) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)   # it holds a bearer token
        path.write_text(yaml.safe_dump(self.kubeconfig(token=token), sort_keys=False))
        return path
