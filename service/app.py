"""The gateway process: store, cluster client, watch hub, core, and both listeners.

``GatewayApp`` knows nothing about the embedded cluster: it is given a kubeconfig (or
in-cluster mode) and talks to whatever is behind it over HTTP. Start order follows the
dependencies (database, cluster, core, listeners); stop is the reverse, with the
listeners drained first so open streams end cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from aiohttp import web
from grpc_health.v1 import health_pb2

from service.api.grpc import GrpcTls, start_grpc_server
from service.api.rest import close_streams, create_rest_app, rest_runner
from service.cluster.client import KubeClient, connect_cluster
from service.cluster.lease import LeaderElector
from service.cluster.watch_hub import WatchHub
from service.core.auth import Authenticator, Authorizer, PolicyAuthorizer, StaticTokenAuthenticator
from service.core.export_settings import ExportSettings
from service.core.gateway import CoreSettings, Gateway
from service.core.kube_auth import SubjectAccessReviewAuthorizer, TokenReviewAuthenticator
from service.export.upstream import UpstreamBlocks
from service.settings import Settings, load_tls
from service.store.db import Database, migrate
from service.store.engine import safe_url

log = logging.getLogger("dvp.gateway")

# The REST contract is served as written; an installed package finds it through the env
# (the Dockerfile sets it), a checkout next to the sources.
OPENAPI_PATH = Path(os.environ.get("DVP_GATEWAY_OPENAPI_PATH")
                    or Path(__file__).resolve().parent.parent / "openapi.yaml")


@dataclass
class GatewayApp:
    settings: Settings
    authenticator: Authenticator | None
    authorizer: Authorizer | None
    core_settings: CoreSettings = field(default_factory=CoreSettings)
    grpc_port: int = 0
    rest_port: int = 0
    _stack: list[object] = field(default_factory=list)
    _db: Database | None = None
    _gateway: Gateway | None = None
    _grpc: grpc.aio.Server | None = None
    _rest: web.AppRunner | None = None
    _hub: WatchHub | None = None
    _cluster: KubeClient | None = None
    _elector: LeaderElector | None = None
    _elector_task: asyncio.Task[None] | None = None
    _blocks: UpstreamBlocks | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, core_settings: CoreSettings | None = None) -> GatewayApp:
        core = core_settings or CoreSettings(
            resync_interval=settings.reconcile_interval, lease_namespace=settings.lease_namespace,
            export=ExportSettings(max_concurrent=settings.export_max_concurrent,
                                  max_per_caller=settings.export_max_per_caller,
                                  piece=settings.export_chunk_bytes))
        if settings.auth == "kubernetes":
            # Built in start(), once there is a cluster client to ask.
            return cls(settings, None, None, core)
        if settings.auth != "static":
            raise SystemExit(f"unknown --auth {settings.auth!r}: use static or kubernetes")
        if settings.token_file is None:
            raise SystemExit("a token file is required (--token-file); the embedded mode creates one")
        authn = StaticTokenAuthenticator.from_file(settings.token_file)
        authz: Authorizer = (PolicyAuthorizer.from_file(settings.policy_file) if settings.policy_file
                             else PolicyAuthorizer.allow_all_for_groups("admins"))
        return cls(settings, authn, authz, core)

    @property
    def hub(self) -> WatchHub:
        assert self._hub is not None, "not started"
        return self._hub

    @property
    def gateway(self) -> Gateway:
        assert self._gateway is not None, "not started"
        return self._gateway

    async def start(self) -> None:
        s = self.settings
        url = s.effective_database_url
        await migrate(url)
        self._db = await Database.connect(url)
        cluster = await connect_cluster(kubeconfig=s.kubeconfig, context=s.kube_context or None,
                                        in_cluster=s.in_cluster)
        self._cluster = cluster
        if self.authenticator is None or self.authorizer is None:
            self.authenticator = TokenReviewAuthenticator(cluster)
            self.authorizer = SubjectAccessReviewAuthorizer(cluster)
        self._hub = WatchHub(cluster)
        # Background reconciling runs on one replica at a time: the holder of this Lease.
        cs = self.core_settings
        self._elector = LeaderElector(cluster, cs.lease_namespace, cs.lease_name,
                                      identity=f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}",
                                      lease_seconds=int(cs.lease_duration))
        self._elector_task = asyncio.create_task(self._elector.run(), name="lease")
        self._blocks = UpstreamBlocks(cluster.authorization, client_cert=cluster.client_certificate())
        self._gateway = Gateway(operations=self._db.operations, audit=self._db.audit, cluster=cluster,
                                hub=self._hub, authenticator=self.authenticator, authorizer=self.authorizer,
                                page_tokens=self._db.page_tokens, settings=cs, leader=self._elector,
                                blocks=self._blocks)
        await self._gateway.start()

        tls = load_tls(s)
        grpc_tls = GrpcTls(tls.cert_chain, tls.private_key, tls.client_ca) if tls else None
        self._grpc, self.grpc_port = await start_grpc_server(self._gateway, host=s.grpc_host, port=s.grpc_port,
                                                             tls=grpc_tls)
        rest_app = create_rest_app(self._gateway, openapi_path=OPENAPI_PATH)
        self._rest = rest_runner(rest_app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self._rest.setup()
        site = web.TCPSite(self._rest, s.rest_host, s.rest_port, ssl_context=_rest_ssl(s))
        await site.start()
        self.rest_port = _bound_port(self._rest)
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        log.info("gateway started", extra={"fields": {"grpc_port": self.grpc_port, "rest_port": self.rest_port,
                                                      "database": safe_url(url)}})

    async def stop(self) -> None:
        grace = self.settings.shutdown_grace
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        # Close the long-lived streams first, so the listeners can drain quickly.
        if self._rest is not None:
            await close_streams(self._rest.app)
        if self._grpc is not None:
            await self._grpc.stop(grace)
        if self._rest is not None:
            await self._rest.cleanup()
        if self._gateway is not None:
            await self._gateway.stop()
        if self._elector_task is not None:
            # Cancelling run() releases the Lease so another replica takes over at once.
            self._elector_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._elector_task
        if self._blocks is not None:
            await self._blocks.close()
        if self._hub is not None:
            await self._hub.close()
        if self._cluster is not None:
            await self._cluster.close()
        if self._db is not None:
            await self._db.close()
        log.info("gateway stopped")

    async def _set_health(self, status: int) -> None:
        health = getattr(self._grpc, "health_servicer", None)
        if health is not None:
            await health.set("", status)


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple):
            return int(address[1])
    raise RuntimeError("REST listener has no TCP address")


def _rest_ssl(settings: Settings) -> ssl.SSLContext | None:
    if not settings.tls_enabled:
        return None
    assert settings.tls_cert is not None and settings.tls_key is not None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(settings.tls_cert, settings.tls_key)
    if settings.tls_client_ca is not None:
        ctx.load_verify_locations(settings.tls_client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


async def run_until_signalled(app: GatewayApp, stop: asyncio.Event) -> None:
    await app.start()
    try:
        await stop.wait()
    finally:
        await app.stop()
