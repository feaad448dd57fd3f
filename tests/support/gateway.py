"""``gateway_server``: the whole gateway (both listeners on real sockets) over the
embedded cluster (real HTTP) and a real database (SQLite and PostgreSQL, via the
``database_url`` parameter)."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.app import GatewayApp
from service.core.gateway import CoreSettings
from service.settings import Settings

# Subjects the tests act as: an admin (everything), a snapshot operator limited to the
# demo namespace, an auditor (the audit log only) and a stranger (nothing).
USERS: dict[str, tuple[str, ...]] = {
    "dev": ("admins", "auditors"),
    "operator": ("operators",),
    "auditor": ("auditors",),
    "stranger": (),
}

POLICY: dict[str, Any] = {
    "rules": [
        {"subjects": ["group:admins"], "namespaces": ["*"], "verbs": ["*"], "resources": ["*"]},
        {"subjects": ["group:operators"], "namespaces": ["demo"],
         "verbs": ["get", "list", "watch", "create", "delete"],
         "resources": ["disk-snapshots", "vm-snapshots", "operations"]},
        {"subjects": ["group:auditors"], "namespaces": ["*"], "verbs": ["list", "verify", "export"],
         "resources": ["audit"]},
    ]
}


@dataclass
class GatewayServer:
    app: GatewayApp
    cluster: Any
    tokens: dict[str, str]
    namespace: str = "demo"
    kubeconfig: Path = field(default=Path())

    @property
    def token(self) -> str:
        return self.tokens["dev"]

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.app.grpc_port}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.app.rest_port}"

    def auth(self, user: str = "dev") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}


def write_identity_files(directory: Path) -> tuple[Path, Path, dict[str, str]]:
    tokens = {name: f"test-token-{name}-{hashlib.sha256(name.encode()).hexdigest()[:16]}" for name in USERS}
    token_file = directory / "tokens.yaml"
    token_file.write_text(yaml.safe_dump({"tokens": [
        {"subject": name, "groups": list(groups), "token_sha256": hashlib.sha256(tokens[name].encode()).hexdigest()}
        for name, groups in USERS.items()
    ]}))
    policy_file = directory / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(POLICY))
    return token_file, policy_file, tokens


async def start_gateway(cluster: Any, database_url: str, directory: Path,
                        core_settings: CoreSettings | None = None, tracer_provider: Any = None,
                        **settings_overrides: Any) -> tuple[GatewayApp, dict[str, str], Path]:
    """A started gateway (metrics on a free port); ``tracer_provider`` (an OpenTelemetry
    SDK TracerProvider) turns tracing on into it."""
    kubeconfig = cluster.write_kubeconfig(directory / "kubeconfig.yaml")
    token_file, policy_file, tokens = write_identity_files(directory)
    settings = replace(Settings(), data_dir=directory, grpc_port=0, rest_port=0, database_url=database_url,
                       kubeconfig=kubeconfig, token_file=token_file, policy_file=policy_file,
                       shutdown_grace=1.0, **{"metrics_port": 0, **settings_overrides})
    app = GatewayApp.from_settings(settings, core_settings=core_settings or CoreSettings(resync_interval=0.2))
    app.tracer_provider = tracer_provider
    await app.start()
    return app, tokens, kubeconfig


@contextlib.asynccontextmanager
async def running_gateway(cluster: Any, database_url: str, directory: Path,
                          core_settings: CoreSettings | None = None) -> AsyncIterator[GatewayServer]:
    """A started gateway on ``cluster``, stopped on leaving."""
    app, tokens, kubeconfig = await start_gateway(cluster, database_url, directory, core_settings)
    try:
        yield GatewayServer(app=app, cluster=cluster, tokens=tokens, kubeconfig=kubeconfig)
    finally:
        await app.stop()


@pytest.fixture
async def gateway_server(embedded_cluster: Any, database_url: str, tmp_path: Path) -> AsyncIterator[GatewayServer]:
    async with running_gateway(embedded_cluster, database_url, tmp_path) as server:
        yield server
