"""Process settings: defaults < environment (DVP_GATEWAY_*) < command-line flags.

The defaults are the embedded mode: a SQLite file and the embedded cluster, both under
``./var``, so ``./dev serve`` works on a fresh clone with nothing configured.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

ENV_PREFIX = "DVP_GATEWAY_"


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("var")
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50051
    rest_host: str = "127.0.0.1"
    rest_port: int = 8080
    # Empty: a SQLite file in data_dir. postgresql+asyncpg://... in production.
    database_url: str = ""
    # Which cluster: a kubeconfig file, the in-cluster service account, or (neither) the
    # embedded cluster started in-process.
    kubeconfig: Path | None = None
    kube_context: str = ""
    in_cluster: bool = False
    embedded_step_delay: float = 1.0     # realistic pacing for a demo; tests use 0
    embedded_seed_demo: bool = True
    # Bearer tokens and the authorization policy. Empty in embedded mode: a dev token
    # file is created in data_dir and its token printed once.
    token_file: Path | None = None
    policy_file: Path | None = None
    # "static": the token and policy files above; "kubernetes": the cluster answers with
    # TokenReview and SubjectAccessReview (a real cluster's users and RBAC).
    auth: str = "static"
    # TLS for both listeners; client_ca turns on mTLS (client certificates required).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    log_level: str = "INFO"
    log_format: str = "json"             # json | text
    shutdown_grace: float = 10.0
    reconcile_interval: float = 30.0
    # Where the replicas' leader-election Lease lives (the gateway's own namespace in a cluster).
    lease_namespace: str = "default"
    # Exports: concurrent streams (per replica, and per caller), bytes per read and message.
    export_max_concurrent: int = 16
    export_max_per_caller: int = 4
    export_chunk_bytes: int = 1 << 20

    @property
    def embedded(self) -> bool:
        return self.kubeconfig is None and not self.in_cluster

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{(self.data_dir / 'gateway.db').resolve()}"

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert is not None and self.tls_key is not None


_BOOL_TRUE = {"1", "true", "yes", "on"}
_BOOL_FALSE = {"0", "false", "no", "off"}


def _coerce(name: str, raw: str, current: Any) -> Any:
    kind = type(current) if current is not None else None
    if name in {"kubeconfig", "token_file", "policy_file", "tls_cert", "tls_key", "tls_client_ca", "data_dir"}:
        return Path(raw) if raw else None
    if kind is bool:
        low = raw.strip().lower()
        if low in _BOOL_TRUE:
            return True
        if low in _BOOL_FALSE:
            return False
        raise ValueError(f"{ENV_PREFIX}{name.upper()}: expected a boolean, got {raw!r}")
    if kind is int:
        return int(raw)
    if kind is float:
        return float(raw)
    return raw


def from_env(env: Mapping[str, str] | None = None, base: Settings | None = None) -> Settings:
    env = os.environ if env is None else env
    settings = base or Settings()
    changes: dict[str, Any] = {}
    for f in fields(Settings):
        raw = env.get(ENV_PREFIX + f.name.upper())
        if raw is not None:
            try:
                changes[f.name] = _coerce(f.name, raw, getattr(settings, f.name))
            except ValueError as exc:
                raise SystemExit(f"invalid setting {ENV_PREFIX}{f.name.upper()}: {exc}") from None
    if changes.get("data_dir") is None:
        changes.pop("data_dir", None)
    return replace(settings, **changes)


def add_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per setting (``--grpc-port``...), defaulting to "not given"."""
    for f in fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        default = Settings.__dataclass_fields__[f.name].default
        if isinstance(default, bool):
            parser.add_argument(flag, dest=f.name, default=None, action=argparse.BooleanOptionalAction,
                                help=f"(env {ENV_PREFIX}{f.name.upper()})")
        else:
            parser.add_argument(flag, dest=f.name, default=None, metavar=f.name.upper(),
                                help=f"default {default!r} (env {ENV_PREFIX}{f.name.upper()})")


def from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Settings:
    settings = from_env(env)
    changes: dict[str, Any] = {}
    for f in fields(Settings):
        value = getattr(args, f.name, None)
        if value is None:
            continue
        changes[f.name] = value if isinstance(value, bool) else _coerce(f.name, str(value), getattr(settings, f.name))
    return replace(settings, **changes)


@dataclass(frozen=True)
class TlsMaterial:
    cert_chain: bytes
    private_key: bytes
    client_ca: bytes | None = field(default=None)


def load_tls(settings: Settings) -> TlsMaterial | None:
    if not settings.tls_enabled:
        return None
    assert settings.tls_cert is not None and settings.tls_key is not None
    ca = settings.tls_client_ca.read_bytes() if settings.tls_client_ca else None
    return TlsMaterial(settings.tls_cert.read_bytes(), settings.tls_key.read_bytes(), ca)
