"""Where the gateway is and who we are: flags, then env, then the client config file.

Lookup (docs/cli.md): ``--server`` > $DVPCTL_SERVER > config ``rest`` > the default;
the token ``--token`` > ``--token-file`` > $DVPCTL_TOKEN > config ``token`` / ``tokenFile``;
the namespace ``-n`` > config ``namespace``. The config file is ``--config``, else what
``service.client.config.find_config`` finds ($DVPCTL_CONFIG, ./var/client.yaml,
~/.config/dvpctl/config.yaml).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from service.client.config import ClientConfig, ConfigError, find_config, load_config
from service.ctl.errors import CtlError, UsageError

ENV_SERVER = "DVPCTL_SERVER"
ENV_TOKEN = "DVPCTL_TOKEN"


@dataclass(frozen=True)
class Connection:
    server: str                                  # REST base URL, no trailing slash, no /v1
    token: str = field(repr=False)
    ca_file: Path | None
    namespace: str                               # "" when neither -n nor the config gave one
    config_source: Path | None

    def need_namespace(self) -> str:
        if not self.namespace:
            where = f" (the config {self.config_source} has no namespace)" if self.config_source else ""
            raise UsageError(f"no namespace: pass -n NAMESPACE{where}")
        return self.namespace


def resolve(args: argparse.Namespace, env: Mapping[str, str]) -> Connection:
    config = _config(args)
    server = (getattr(args, "server", None) or env.get(ENV_SERVER) or config.rest).rstrip("/")
    parts = urlsplit(server)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--server: expected http(s)://HOST:PORT, got {server!r}")
    token = _token(args, env, config)
    ca_file: Path | None = getattr(args, "ca_file", None) or config.ca_file
    namespace = getattr(args, "namespace", None) or config.namespace
    return Connection(server=server, token=token, ca_file=ca_file, namespace=namespace,
                      config_source=config.source)


def _config(args: argparse.Namespace) -> ClientConfig:
    explicit: Path | None = getattr(args, "config", None)
    try:
        return load_config(find_config(explicit))
    except ConfigError as exc:
        raise CtlError(str(exc)) from None


def _token(args: argparse.Namespace, env: Mapping[str, str], config: ClientConfig) -> str:
    token: str | None = getattr(args, "token", None)
    token_file: Path | None = getattr(args, "token_file", None)
    if token is None and token_file is not None:
        try:
            token = token_file.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise CtlError(f"--token-file: cannot read {token_file}: {reason}") from None
    if token is None:
        token = env.get(ENV_TOKEN) or None
    if token is None:
        try:
            token = config.bearer_token()
        except ConfigError as exc:
            raise CtlError(str(exc)) from None
    token = token.strip()
    if not token:
        where = f" or put token/tokenFile in {config.source}" if config.source else " or write a config file"
        raise CtlError(f"no bearer token: pass --token-file PATH or --token, set {ENV_TOKEN},{where}")
    if any(c in token for c in "\r\n\0") or not token.isprintable():
        raise CtlError("the bearer token holds control characters (it is never printed)")
    return token
