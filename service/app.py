"""The gateway process: store, cluster client, watch hub, core, and both listeners.

``GatewayApp`` knows nothing about the embedded cluster: it is given a kubeconfig (or
in-cluster mode) and talks to whatever is behind it over HTTP. Start order follows the
dependencies (cluster configuration, database, core, listeners); stop is the reverse,
with the listeners drained first so open streams end cleanly. Whatever stops the start
(a file, the database, a port) is a ``StartupError`` of one line, raised after what had
started is stopped again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from aiohttp import web
from grpc_health.v1 import health_pb2

from service.api.grpc import GrpcTls, start_grpc_server
from service.api.rest import close_streams, create_rest_app, rest_runner
from service.cluster.client import KubeClient, connect_cluster
from service.cluster.lease import LeaderElector
from service.cluster.watch_hub import WatchHub
from service.console import STATIC_DIR as CONSOLE_DIR
from service.core.auth import Authenticator, Authorizer
from service.core.errors import ApiError
from service.core.export_settings import ExportSettings
from service.core.gateway import CoreSettings, Gateway
from service.core.kube_auth import SubjectAccessReviewAuthorizer, TokenReviewAuthenticator
from service.export.upstream import UpstreamBlocks
from service.log import redact
from service.observability.listener import start_metrics_listener
from service.observability.metrics import GatewayMetrics
from service.observability.telemetry import Telemetry
from service.settings import (
    Settings,
    StartupError,
    cluster_flag,
    load_policy_file,
    load_tls,
    load_token_file,
    os_reason,
    server_ssl_context,
)
from service.store.db import Database, migrate
from service.store.engine import normalize_url, safe_url

log = logging.getLogger("dvp.gateway")

# The REST contract is served as written; an installed package finds it through the env
# (the Dockerfile sets it), a checkout next to the sources.
OPENAPI_PATH = Path(os.environ.get("DVP_GATEWAY_OPENAPI_PATH")
                    or Path(__file__).resolve().parent.parent / "openapi.yaml")

# Migrating and connecting must answer within this, or the start fails (a database
# behind a black-holing firewall would otherwise hold it up for the driver's retries).
DATABASE_START_TIMEOUT = 20.0


@dataclass
class GatewayApp:
    settings: Settings
    authenticator: Authenticator | None
    authorizer: Authorizer | None
    core_settings: CoreSettings = field(default_factory=CoreSettings)
    grpc_port: int = 0
    rest_port: int = 0
    metrics_port: int = 0   # 0 while metrics are off
    # An OpenTelemetry SDK TracerProvider to trace into (tests: an in-memory exporter's);
    # tracing is then on whatever the settings say, and the provider is the caller's to shut down.
    tracer_provider: Any = None
    telemetry: Telemetry = field(default_factory=Telemetry.off)
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
    _metrics: web.AppRunner | None = None

    @classmethod
    def from_settings(cls, settings: Settings, *, core_settings: CoreSettings | None = None) -> GatewayApp:
        core = core_settings or CoreSettings(
            resync_interval=settings.reconcile_interval, lease_namespace=settings.lease_namespace,
            lease_duration=settings.lease_duration, lease_renew_interval=settings.lease_duration / 7.5,
            max_streams_per_caller=settings.max_streams_per_caller,
            export=ExportSettings(max_concurrent=settings.export_max_concurrent,
                                  max_per_caller=settings.export_max_per_caller,
                                  piece=settings.export_chunk_bytes))
        # Files are checked here, before anything starts: a broken one stops nothing.
        server_ssl_context(settings)
        if settings.auth == "kubernetes":
            # Built in start(), once there is a cluster client to ask.
            return cls(settings, None, None, core)
        if settings.auth != "static":
            raise StartupError(f"--auth: unknown value {settings.auth!r} (choose from static, kubernetes)")
        return cls(settings, load_token_file(settings), load_policy_file(settings), core)

    @property
    def hub(self) -> WatchHub:
        assert self._hub is not None, "not started"
        return self._hub

    @property
    def gateway(self) -> Gateway:
        assert self._gateway is not None, "not started"
        return self._gateway

    async def start(self) -> None:
        """Start everything, or raise StartupError having stopped what had started."""
        try:
            await self._start()
        except BaseException:
            try:
                await self.stop()
            except Exception:   # the start's failure is the one to report
                log.debug("stopping after a failed start failed", exc_info=True)
            raise

    async def _start(self) -> None:
        s = self.settings
        url = s.effective_database_url
        self.telemetry = telemetry = _telemetry(s, self.tracer_provider)
        # The kubeconfig first: reading it needs no network, so a broken one fails at once.
        try:
            cluster = await connect_cluster(kubeconfig=s.kubeconfig, context=s.kube_context or None,
                                            in_cluster=s.in_cluster,
                                            trace_configs=telemetry.cluster_trace_configs())
        except ApiError as exc:
            raise StartupError(f"{cluster_flag(s)}: {exc.message}") from None
        self._cluster = cluster
        self._db = await open_database(url, telemetry)
        if telemetry.metrics is not None:
            telemetry.metrics.observe_pool(self._db.engine.pool)
        if self.authenticator is None or self.authorizer is None:
            self.authenticator = TokenReviewAuthenticator(cluster)
            self.authorizer = SubjectAccessReviewAuthorizer(cluster)
        self._hub = WatchHub(cluster, on_restart=telemetry.watch_restarted)
        # Background reconciling runs on one replica at a time: the holder of this Lease.
        cs = self.core_settings
        self._elector = LeaderElector(cluster, cs.lease_namespace, cs.lease_name,
                                      identity=_lease_identity(s),
                                      lease_seconds=int(cs.lease_duration), retry_period=cs.lease_renew_interval)
        self._elector_task = asyncio.create_task(self._elector.run(), name="lease")
        self._blocks = UpstreamBlocks(cluster.authorization, client_cert=cluster.client_certificate(),
                                      trace_configs=telemetry.cluster_trace_configs(exporter=True))
        self._gateway = Gateway(operations=self._db.operations, audit=self._db.audit, cluster=cluster,
                                hub=self._hub, authenticator=self.authenticator, authorizer=self.authorizer,
                                page_tokens=self._db.page_tokens, settings=cs, leader=self._elector,
                                blocks=self._blocks)
        await self._gateway.start()

        tls = load_tls(s)
        grpc_tls = GrpcTls(tls.cert_chain, tls.private_key, tls.client_ca) if tls else None
        # Probed with a plain socket first: grpc says only "failed to bind" (and writes its
        # own error line to stderr), the socket says why.
        check_listen(s.grpc_host, s.grpc_port, "gRPC")
        try:
            self._grpc, self.grpc_port = await start_grpc_server(self._gateway, host=s.grpc_host,
                                                                 port=s.grpc_port, tls=grpc_tls, telemetry=telemetry)
        except (OSError, RuntimeError):
            check_listen(s.grpc_host, s.grpc_port, "gRPC")   # lost a race for the port: say why
            raise StartupError(f"cannot listen on {_address(s.grpc_host, s.grpc_port)} (gRPC): "
                               "grpc could not bind it") from None
        rest_app = create_rest_app(self._gateway, openapi_path=OPENAPI_PATH, telemetry=telemetry,
                                   console_dir=CONSOLE_DIR if s.console else None)
        self._rest = rest_runner(rest_app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self._rest.setup()
        site = web.TCPSite(self._rest, s.rest_host, s.rest_port, ssl_context=server_ssl_context(s))
        try:
            await site.start()
        except OSError as exc:
            raise StartupError(f"cannot listen on {_address(s.rest_host, s.rest_port)} (REST): "
                               f"{os_reason(exc)}") from None
        self.rest_port = _bound_port(self._rest)
        if telemetry.metrics is not None:
            await self._start_metrics(telemetry.metrics)
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        log.info("gateway started", extra={"fields": {"grpc_port": self.grpc_port, "rest_port": self.rest_port,
                                                      "metrics_port": self.metrics_port,
                                                      "database": safe_url(url)}})

    async def _start_metrics(self, metrics: GatewayMetrics) -> None:
        s = self.settings
        check_listen(s.metrics_host, s.metrics_port, "metrics")
        try:
            self._metrics, self.metrics_port = await start_metrics_listener(metrics.registry, s.metrics_host,
                                                                            s.metrics_port)
        except OSError as exc:
            raise StartupError(f"cannot listen on {_address(s.metrics_host, s.metrics_port)} (metrics): "
                               f"{os_reason(exc)}") from None

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
        if self._metrics is not None:
            await self._metrics.cleanup()
        await self.telemetry.close()   # sends the spans still queued
        log.info("gateway stopped")

    async def _set_health(self, status: int) -> None:
        health = getattr(self._grpc, "health_servicer", None)
        if health is not None:
            await health.set("", status)


def _telemetry(settings: Settings, provider: Any) -> Telemetry:
    """Metrics (on by default) and traces (off by default: then OpenTelemetry is not
    even imported), as the settings ask."""
    metrics = GatewayMetrics() if settings.metrics else None
    if settings.tracing or provider is not None:
        return Telemetry.with_tracing(metrics, endpoint=settings.otlp_endpoint, provider=provider)
    return Telemetry(metrics)


def _lease_identity(settings: Settings) -> str:
    """Stable across restarts of one replica (a pod's name, plus its fixed port when several
    share a host), so a replica killed and restarted renews its own Lease at once instead
    of waiting for it to expire; ephemeral ports get a random suffix."""
    host = socket.gethostname()
    if settings.grpc_port:
        return f"{host}-{settings.grpc_port}"
    return f"{host}-{uuid.uuid4().hex[:8]}"


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple):
            return int(address[1])
    raise RuntimeError("REST listener has no TCP address")


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_listen(host: str, port: int, door: str) -> None:
    """Bind (and close) a socket on ``host:port`` as the listener will: StartupError
    with the reason when none of the host's addresses can be bound."""
    where = f"cannot listen on {_address(host, port)} ({door})"
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(f"{where}: {os_reason(exc)}") from None
    failure: OSError | None = None
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            # As the listeners do: a port in TIME_WAIT is free, one being listened on is not.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                failure = failure or exc
                continue
        return
    raise StartupError(f"{where}: {os_reason(failure) if failure else 'no address to bind'}")


async def open_database(url: str, telemetry: Telemetry | None = None) -> Database:
    """Migrate and connect, in bounded time; StartupError naming the database (its
    password hidden) and the reason."""
    deadline = asyncio.timeout(DATABASE_START_TIMEOUT)
    try:
        async with deadline:
            await migrate(url)
            return await Database.connect(url, telemetry)
    except TimeoutError:
        reason = (f"no answer within {DATABASE_START_TIMEOUT:g} s" if deadline.expired()
                  else "the connection timed out")   # the driver's own connect timeout
        raise StartupError(f"cannot open the database {_safe(url)}: {reason}") from None
    except Exception as exc:
        raise StartupError(f"cannot open the database {_safe(url)}: {database_reason(exc, url)}") from None


def _safe(url: str) -> str:
    try:
        return safe_url(normalize_url(url))
    except ValueError:
        return "(malformed URL)"


def database_reason(exc: BaseException, url: str) -> str:
    """The driver's reason, one line, the password never in it (drivers do not echo it,
    but a URL inside a message would carry it)."""
    cause: Any = getattr(exc, "orig", None) or exc     # SQLAlchemy wraps the driver's error
    if isinstance(cause, socket.gaierror) or (isinstance(cause, OSError) and (cause.errno or 0) > 0):
        text = os_reason(cause)   # "connection refused", not asyncpg's "Connect call failed (...)"
    else:
        lines = str(cause).strip().splitlines()
        text = lines[0] if lines else type(cause).__name__
    try:
        password = normalize_url(url).password
    except ValueError:
        password = None
    if password:
        text = text.replace(str(password), "***")
    return redact(text)


async def run_until_signalled(app: GatewayApp, stop: asyncio.Event) -> None:
    await app.start()
    try:
        await stop.wait()
    finally:
        await app.stop()
