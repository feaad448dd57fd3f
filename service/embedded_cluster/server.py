"""The embedded cluster in-process: API server, simulated controllers, demo seed.

Policy file (YAML), for users other than the generated admin::

    users:
      - {name: alice, token: "alice-secret-token", groups: [dev]}
    rules:
      - subjects: ["alice", "group:dev"]
        namespaces: ["demo"]                 # or ["*"]
        verbs: ["get", "list", "watch"]      # or ["*"]
        resources: ["virtualdisksnapshots"]  # plurals, "plural/status", or ["*"]

With a state directory (``state_dir``) the cluster is the same cluster after a restart:
its objects, resourceVersions, CA, admin token and (when free) port are kept there
(see state.py); without one it lives in memory and starts afresh every time.
"""

from __future__ import annotations

import base64
import gc
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
from service.embedded_cluster.apiserver.journal import COMPACT_BYTES
from service.embedded_cluster.apiserver.statefiles import StateError
from service.embedded_cluster.apiserver.store import MemoryStore
from service.embedded_cluster.apiserver.tls import generate, issue
from service.embedded_cluster.controllers import ControllerManager, ControllerSettings
from service.embedded_cluster.controllers.content import MAX_CHUNK
from service.embedded_cluster.controllers.resources import DATAEXPORT
from service.embedded_cluster.controllers.seed import DEMO_NAMESPACE, seed_demo
from service.embedded_cluster.controllers.settings import DEFAULT_EXPORT_CHUNK
from service.embedded_cluster.schema import SchemaAdmission, load_resource_types
from service.embedded_cluster.state import StateDir

__all__ = ["EmbeddedCluster", "EmbeddedClusterConfig", "StateError"]

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
    state_dir: Path | None = None     # objects, CA, admin token and port kept across restarts; None: in memory
    state_compact_bytes: int = COMPACT_BYTES   # journal size that triggers a snapshot (tests shrink it)

    def __post_init__(self) -> None:
        if not 0 < self.export_chunk <= MAX_CHUNK:
            raise ValueError(f"export_chunk must be between 1 and {MAX_CHUNK} bytes")


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


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
        self._state: StateDir | None = None
        self._journaled: MemoryStore | None = None   # a store whose journal is still open

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()   # never leave a listening socket or running controllers behind
            raise

    async def _start(self) -> None:
        config = self.config
        state = self._open_state()
        authority = Authority(self.admin_token, load_policy(config.policy_path))
        # Without the module its CRD is not installed: the API answers 404 and discovery omits it.
        crd_types = [t for t in load_resource_types() if config.export_module or t.key != DATAEXPORT]
        journal = state.journal(compact_bytes=config.state_compact_bytes) if state is not None else None
        if state is not None and journal is not None and journal.restored.fresh and config.seed_demo:
            state.mark_seeding(True)   # before the first write: a crash before the seed ends finishes it next time
        self.store = MemoryStore([*BUILTIN_TYPES, *crd_types], SchemaAdmission(),
                                 watch_history=config.watch_history, journal=journal)
        self._journaled = self.store if journal is not None else None
        await self.store.durable()
        self.faults = FaultInjector(compact=self.store.compact)
        registry = Registry(self.store.types, REVIEW_TYPES)
        api = ApiServer(self.store, registry, authority, self.faults,
                        ApiSettings(bookmark_interval=config.bookmark_interval, watch_queue=config.watch_history))

        ssl_context = None
        if config.tls:
            hosts = [config.host, _url_host(config.host).strip("[]")]
            certificate = issue(state.authority(), hosts) if state is not None else generate(hosts)
            self.ca_pem = certificate.ca_pem
            ssl_context = certificate.server_context()
        sock = self._listen(state)
        port = sock.getsockname()[1]
        self.url = f"{'https' if config.tls else 'http'}://{_url_host(config.host)}:{port}"
        api.server_address = f"{_url_host(config.host)}:{port}"
        try:
            if config.run_controllers:
                # The manager reconciles every existing object at start: loaded work carries on.
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
        except BaseException:
            sock.close()
            raise
        if state is not None:
            state.remember_endpoint(config.host, port)
        if self._manager is not None:
            await self._manager.start()
        await self._seed(state)
        log.info("embedded cluster serving at %s", self.url)

    def _open_state(self) -> StateDir | None:
        if self.config.state_dir is None:
            return None
        state = self._state = StateDir(self.config.state_dir)
        state.open()
        self.admin_token = self.config.admin_token or state.admin_token()
        return state

    def _listen(self, state: StateDir | None) -> socket.socket:
        config = self.config
        last = state.last_port(config.host) if state is not None and config.port == 0 else None
        if last is not None:
            try:
                return _bind(config.host, last)
            except OSError as err:
                log.warning("port %d of the last run is taken (%s): serving on a new one", last, err.strerror)
        return _bind(config.host, config.port)

    async def _seed(self, state: StateDir | None) -> None:
        """The demo seed goes into a fresh cluster only (deleted demo objects stay deleted)."""
        if not self.config.seed_demo or (state is not None and not state.seeding):
            return
        await seed_demo(self.store)
        if state is not None:
            state.mark_seeding(False)

    async def stop(self) -> None:
        if self._runner is not None:
            self.faults.drop_watches()
            if self._manager is not None:
                await self._manager.stop()
                self._manager = None
            await self._runner.cleanup()
            self._runner = None
            # Python 3.11 asyncio drops, without closing, a connection accepted in the instant
            # the listener closes (Server._attach asserts): collect it so its client sees the close.
            gc.collect()
        if self._state is not None:
            # Last, once nothing writes any more: the final snapshot, then the lock.
            if self._journaled is not None:
                await self._journaled.close()
                self._journaled = None
            self._state.close()
            self._state = None

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
        context = {"cluster": CONTEXT_NAME, "user": CONTEXT_NAME}
        if self.config.seed_demo:   # so the guide's `d8 k get vdsnapshot` finds the demo's objects
            context["namespace"] = DEMO_NAMESPACE
        return {"apiVersion": "v1", "kind": "Config", "preferences": {},
                "clusters": [{"name": CONTEXT_NAME, "cluster": cluster}],
                "users": [{"name": CONTEXT_NAME, "user": {"token": token or self.admin_token}}],
                "contexts": [{"name": CONTEXT_NAME, "context": context}],
                "current-context": CONTEXT_NAME}

    def write_kubeconfig(self, path: Path, *, token: str | None = None) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)   # it holds a bearer token
        path.write_text(yaml.safe_dump(self.kubeconfig(token=token), sort_keys=False))
        return path
