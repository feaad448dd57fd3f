"""Where a client finds the gateway and its token: one small YAML file.

`dvp-gateway serve` writes ``<data-dir>/client.yaml`` at every start (the listeners it
bound, the dev token file in embedded mode, the CA with TLS), so a person in the same
directory needs no flags::

    # written by `dvp-gateway serve`
    rest: http://127.0.0.1:8080
    grpc: 127.0.0.1:50051
    tls: false
    tokenFile: /home/me/dvp/var/dev-token
    namespace: demo

``dvpctl`` and ``GatewayClient.from_config`` read it; every key is optional, and a flag
or env var wins over the file. Lookup when no path is given: ``$DVPCTL_CONFIG``, then
``./var/client.yaml`` (what `./dev serve` writes), then ``~/.config/dvpctl/config.yaml``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ENV_CONFIG = "DVPCTL_CONFIG"
SERVE_WRITES = Path("var") / "client.yaml"
USER_CONFIG = Path("~/.config/dvpctl/config.yaml")
DEFAULT_REST = "http://127.0.0.1:8080"
DEFAULT_GRPC = "127.0.0.1:50051"
_KEYS = {"rest", "grpc", "tls", "token", "tokenFile", "caFile", "namespace"}
_MAX_BYTES = 64 * 1024


class ConfigError(Exception):
    """A config file that cannot be used; the message is one line naming the file."""


@dataclass(frozen=True)
class ClientConfig:
    rest: str = DEFAULT_REST           # the REST listener's base URL (no /v1)
    grpc: str = DEFAULT_GRPC           # host:port of the gRPC listener
    tls: bool = False                  # gRPC over TLS (REST follows its URL's scheme)
    token: str = field(default="", repr=False)
    token_file: Path | None = None
    ca_file: Path | None = None        # PEM bundle to trust, with TLS
    namespace: str = ""                # the default namespace of namespaced commands
    source: Path | None = None         # the file this came from, if any

    def bearer_token(self) -> str:
        """The token itself, read from ``token_file`` when no token was given directly."""
        if self.token or self.token_file is None:
            return self.token
        try:
            return self.token_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the token file {self.token_file}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"the token file {self.token_file} is not UTF-8 text") from None


def find_config(explicit: Path | None = None) -> Path | None:
    """The config file to read: the explicit path (which must exist), else the first
    of $DVPCTL_CONFIG, ./var/client.yaml and ~/.config/dvpctl/config.yaml that exists."""
    if explicit is not None:
        return explicit
    env = os.environ.get(ENV_CONFIG, "")
    if env:
        return Path(env)
    for candidate in (SERVE_WRITES, USER_CONFIG.expanduser()):
        if candidate.is_file():
            return candidate
    return None


def load_config(path: Path | None) -> ClientConfig:
    """Read ``path`` (None: the defaults). Relative paths inside are relative to the file."""
    if path is None:
        return ClientConfig()
    try:
        with path.open("rb") as handle:
            raw = handle.read(_MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read the client config {path}: {exc.strerror or exc}") from None
    if len(raw) > _MAX_BYTES:
        raise ConfigError(f"client config {path}: larger than {_MAX_BYTES // 1024} KiB")
    try:
        data = yaml.safe_load(raw) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"client config {path}: not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"client config {path}: expected a mapping of {', '.join(sorted(_KEYS))}")
    unknown = sorted(str(k) for k in data if k not in _KEYS)
    if unknown:
        raise ConfigError(f"client config {path}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_KEYS))})")
    return ClientConfig(
        rest=_text(data, "rest", path, DEFAULT_REST).rstrip("/"),
        grpc=_text(data, "grpc", path, DEFAULT_GRPC),
        tls=_flag(data, "tls", path),
        token=_text(data, "token", path, ""),
        token_file=_file(data, "tokenFile", path),
        ca_file=_file(data, "caFile", path),
        namespace=_text(data, "namespace", path, ""),
        source=path,
    )


def write_config(path: Path, config: ClientConfig) -> Path:
    """Written by `dvp-gateway serve`; never holds a token itself, only its file."""
    data: dict[str, Any] = {"rest": config.rest, "grpc": config.grpc, "tls": config.tls}
    if config.token_file is not None:
        data["tokenFile"] = str(config.token_file.resolve())
    if config.ca_file is not None:
        data["caFile"] = str(config.ca_file.resolve())
    if config.namespace:
        data["namespace"] = config.namespace
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("# written by `dvp-gateway serve` at every start: where it listens, for dvpctl and "
                   "service.client\n" + yaml.safe_dump(data, sort_keys=False))
    tmp.replace(path)
    return path


def connect_host(bound: str) -> str:
    """The address a client on this machine dials for a listener bound to ``bound``."""
    if bound in ("", "0.0.0.0"):
        return "127.0.0.1"
    if bound == "::":
        return "[::1]"
    return f"[{bound}]" if ":" in bound and not bound.startswith("[") else bound


def _text(data: dict[Any, Any], key: str, path: Path, default: str) -> str:
    value = data.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str) or "\n" in value:
        raise ConfigError(f"client config {path}: {key} must be a one-line string")
    return value.strip()


def _flag(data: dict[Any, Any], key: str, path: Path) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"client config {path}: {key} must be true or false")
    return value


def _file(data: dict[Any, Any], key: str, path: Path) -> Path | None:
    text = _text(data, key, path, "")
    if not text:
        return None
    file = Path(text).expanduser()
    return file if file.is_absolute() else path.parent / file
