"""Process settings: defaults < environment (DVP_GATEWAY_*) < command-line flags.

The defaults are the embedded mode: a SQLite file and the embedded cluster, both under
``./var``, so ``./dev serve`` works on a fresh clone with nothing configured.

Every setting is one ``Option`` below: its help text, how a value is read (the same for
the flag and the env var, so both refuse the same values with the same words) and, for a
fixed set of values, its choices. A refused value is a ``UsageError`` naming the flag or
env var; ``StartupError`` is for what a valid value points to (a file, a port, a database).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import socket
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.core.auth import Authenticator, Authorizer

ENV_PREFIX = "DVP_GATEWAY_"


class StartupError(Exception):
    """The gateway cannot start; the text is the whole one-line message for the operator."""

    exit_code = 1


class UsageError(StartupError):
    """A flag or env var with a value the gateway refuses (exit code 2, like argparse)."""

    exit_code = 2


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
    # 0: the port of its last start (kept in its state directory) if free, else a free one.
    embedded_port: int = 0
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
    # The web console at /console/ on the REST listener (static files; the API does the work).
    console: bool = True
    log_level: str = "INFO"
    log_format: str = "json"             # json | text
    shutdown_grace: float = 10.0
    reconcile_interval: float = 30.0
    # Where the replicas' leader-election Lease lives (the gateway's own namespace in a cluster).
    lease_namespace: str = "default"
    # Seconds a replica's Lease lasts without renewal: how long a dead leader's work waits.
    lease_duration: int = 15
    # Open streams (watches, audit and disk exports) one caller may hold in this replica.
    max_streams_per_caller: int = 64
    # Exports: concurrent streams (per replica, and per caller), bytes per read and message.
    export_max_concurrent: int = 16
    export_max_per_caller: int = 4
    export_chunk_bytes: int = 1 << 20
    # Prometheus metrics on a listener of their own (0: a free port), or none.
    metrics: bool = True
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    # OpenTelemetry traces, off by default (then not even the SDK is imported); exported
    # over OTLP/gRPC to otlp_endpoint (empty: the exporter's own default and env vars).
    tracing: bool = False
    otlp_endpoint: str = ""

    @property
    def embedded(self) -> bool:
        return self.kubeconfig is None and not self.in_cluster

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{(self.data_dir / 'gateway.db').resolve()}"

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert is not None and self.tls_key is not None


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


# ---------------------------------------------------------------- value readers
# Each takes the raw text and returns the value or raises ValueError with a message
# that does not repeat the flag's name (the caller prefixes the flag or env var).

_BOOL_TRUE = {"1", "true", "yes", "on"}
_BOOL_FALSE = {"0", "false", "no", "off"}
_MAX_CHUNK = 4 << 20   # the export code's own ceiling (one gRPC message)
_MIN_CHUNK = 4096


def _bool(raw: str) -> bool:
    low = raw.strip().lower()
    if low in _BOOL_TRUE:
        return True
    if low in _BOOL_FALSE:
        return False
    raise ValueError(f"expected a boolean (true/false, 1/0, yes/no, on/off), got {raw!r}")


def _port(raw: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise ValueError(f"expected a port number from 0 to 65535, got {raw!r}")
    return value


def _host(raw: str) -> str:
    if not raw.strip():
        raise ValueError("expected a host name or address, got an empty value")
    return raw.strip()


def _seconds(*, zero_ok: bool) -> Callable[[str], float]:
    def read(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
            bound = "0 or more" if zero_ok else "more than 0"
            raise ValueError(f"expected a number of seconds, {bound}, got {raw!r}")
        return value
    return read


def _count(low: int, high: int | None = None) -> Callable[[str], int]:
    def read(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            value = low - 1
        if value < low or (high is not None and value > high):
            bound = f"from {low} to {high}" if high is not None else f"{low} or more"
            raise ValueError(f"expected a whole number {bound}, got {raw!r}")
        return value
    return read


def _path(raw: str) -> Path | None:
    return Path(raw) if raw else None


def _dir(raw: str) -> Path:
    if not raw:
        raise ValueError("expected a directory, got an empty value")
    return Path(raw)


def _text(raw: str) -> str:
    return raw


def _namespace(raw: str) -> str:
    from service.core.validation import namespace  # the same rule as the API's

    if namespace(raw):
        raise ValueError(f"expected a Kubernetes namespace name (lowercase letters, digits, '-'), got {raw!r}")
    return raw


def _endpoint(raw: str) -> str:
    """An OTLP/gRPC endpoint: ``http://HOST:PORT``, ``https://HOST:PORT`` or ``HOST:PORT``."""
    value = raw.strip()
    if not value:
        return value
    if not re.fullmatch(r"(https?://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}/?", value):
        raise ValueError(f"expected an OTLP endpoint such as http://HOST:4317, got {raw!r}")
    return value


def _database_url(raw: str) -> str:
    if not raw:
        return raw
    # Imported here: --help and the other flags need no SQLAlchemy.
    from service.store.engine import normalize_url

    normalize_url(raw)   # its ValueError never quotes the URL (it may hold a password)
    return raw


@dataclass(frozen=True)
class Option:
    group: str
    help: str
    read: Callable[[str], Any]
    default_text: str = ""           # "": the default value itself
    choices: tuple[str, ...] = ()
    metavar: str | None = None


_CHOICE_FOLD: dict[str, Callable[[str], str]] = {"log_level": str.upper, "log_format": str.lower,
                                                  "auth": str.lower}

OPTIONS: dict[str, Option] = {
    "data_dir": Option(
        "storage", "directory for the SQLite database, the embedded cluster's kubeconfig and the dev "
        "token file; created if missing, must be writable", _dir, metavar="DIR"),
    "grpc_host": Option("listeners", "address the gRPC listener binds", _host, metavar="HOST"),
    "grpc_port": Option("listeners", "port of the gRPC listener; 0 picks a free port", _port, metavar="PORT"),
    "rest_host": Option("listeners", "address the REST listener binds", _host, metavar="HOST"),
    "rest_port": Option("listeners", "port of the REST listener; 0 picks a free port", _port, metavar="PORT"),
    "database_url": Option(
        "storage", "database URL, sqlite:///FILE or postgresql://USER:PASSWORD@HOST[:PORT]/DB; its password "
        "is never printed", _database_url, "a SQLite file DIR/gateway.db", metavar="URL"),
    "kubeconfig": Option(
        "cluster", "kubeconfig file of the cluster to work with; with neither this nor --in-cluster "
        "the embedded cluster is started in-process", _path, "none, the embedded cluster", metavar="FILE"),
    "kube_context": Option("cluster", "context of --kubeconfig to use", _text,
                           "the kubeconfig's current-context", metavar="NAME"),
    "in_cluster": Option("cluster", "use the pod's service account (when running inside the cluster)",
                         _bool, "off"),
    "embedded_port": Option(
        "cluster", "port of the embedded cluster's API server (https on 127.0.0.1; its kubeconfig is "
        "written to DIR/embedded-kubeconfig.yaml)", _port,
        "0: the port of its last start if free, else a free one", metavar="PORT"),
    "embedded_step_delay": Option(
        "cluster", "seconds the embedded cluster's simulated controllers wait between steps; "
        "0 for none", _seconds(zero_ok=True), metavar="SECONDS"),
    "embedded_seed_demo": Option(
        "cluster", "seed the embedded cluster with the guide's demo objects (namespace demo, VM "
        "linux-vm, ...)", _bool, "on"),
    "lease_namespace": Option(
        "cluster", "namespace of the Lease through which replicas elect the one that reconciles",
        _namespace, metavar="NAMESPACE"),
    "lease_duration": Option(
        "cluster", "seconds the Lease lasts without renewal: a replica that dies hands reconciling "
        "to another within about this long (renewed every duration/7.5 s)", _count(3, 3600), metavar="SECONDS"),
    "auth": Option(
        "authentication", "who authenticates and authorizes callers: static, the --token-file and "
        "--policy-file; kubernetes, the cluster's TokenReview and SubjectAccessReview",
        _text, choices=("static", "kubernetes")),
    "token_file": Option(
        "authentication", "YAML file of bearer tokens (see docs/security.md)", _path,
        "embedded: a dev token file DIR/tokens.yaml, its token printed at start", metavar="FILE"),
    "policy_file": Option(
        "authentication", "YAML file of authorization rules (see docs/security.md)", _path,
        "members of group admins may do everything", metavar="FILE"),
    "tls_cert": Option("tls", "PEM certificate chain for both listeners (needs --tls-key)", _path,
                       "none: plaintext", metavar="FILE"),
    "tls_key": Option("tls", "PEM private key of --tls-cert (unencrypted)", _path, "none", metavar="FILE"),
    "tls_client_ca": Option(
        "tls", "PEM CA bundle; both listeners then require client certificates it signed (mTLS)",
        _path, "none: no client certificates", metavar="FILE"),
    "console": Option("listeners", "serve the web console at /console/ on the REST listener (it calls the "
                      "same API, with the token a person enters)", _bool, "on"),
    "log_level": Option("logging", "least severe level logged, in any case", _text,
                        choices=("DEBUG", "INFO", "WARNING", "ERROR")),
    "log_format": Option("logging", "json: one JSON object per line; text: one plain line per entry",
                         _text, choices=("json", "text")),
    "shutdown_grace": Option(
        "timing", "seconds open calls get to finish after SIGTERM or SIGINT; 0 for none",
        _seconds(zero_ok=True), metavar="SECONDS"),
    "reconcile_interval": Option(
        "timing", "seconds between full resyncs of unfinished operations with the cluster",
        _seconds(zero_ok=False), metavar="SECONDS"),
    "max_streams_per_caller": Option(
        "timing", "open streams (watches, audit and disk exports) one caller may hold in this replica; "
        "more are refused with RESOURCE_EXHAUSTED or HTTP 429", _count(1), metavar="N"),
    "export_max_concurrent": Option(
        "exports", "exports streaming at once in this replica; more are refused with RESOURCE_EXHAUSTED "
        "or HTTP 429", _count(1), metavar="N"),
    "export_max_per_caller": Option("exports", "exports streaming at once for one caller", _count(1),
                                    metavar="N"),
    "export_chunk_bytes": Option(
        "exports", f"bytes per upstream read and per gRPC message, {_MIN_CHUNK} to {_MAX_CHUNK}",
        _count(_MIN_CHUNK, _MAX_CHUNK), metavar="BYTES"),
    "metrics": Option("observability", "serve Prometheus metrics at http://METRICS_HOST:METRICS_PORT/metrics "
                      "(see docs/observability.md)", _bool, "on"),
    "metrics_host": Option("observability", "address the metrics listener binds", _host, metavar="HOST"),
    "metrics_port": Option("observability", "port of the metrics listener; 0 picks a free port", _port,
                           metavar="PORT"),
    "tracing": Option(
        "observability", "OpenTelemetry traces of every call (database and cluster work as child spans), "
        "exported over OTLP/gRPC; needs pip install 'dvp-snapshot-gateway[otlp]'", _bool, "off"),
    "otlp_endpoint": Option(
        "observability", "OTLP/gRPC endpoint spans are sent to, http://HOST:PORT (needs --tracing)", _endpoint,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT, else http://localhost:4317",
        metavar="URL"),
}

_GROUP_TITLES = {"listeners": "listeners", "storage": "storage", "cluster": "cluster",
                 "authentication": "authentication and authorization", "tls": "TLS",
                 "logging": "logging", "timing": "timing", "exports": "exports",
                 "observability": "metrics and traces"}


def read_value(name: str, raw: str) -> Any:
    """``raw`` (a flag's or env var's text) as the value of setting ``name``; ValueError
    with a message (without the setting's name) when it is refused."""
    option = OPTIONS[name]
    if option.choices:
        value = _CHOICE_FOLD.get(name, str)(raw.strip())
        if value not in option.choices:
            raise ValueError(f"invalid choice {raw!r} (choose from {', '.join(option.choices)})")
        return value
    return option.read(raw)


# ---------------------------------------------------------------- environment and flags


def _env_changes(env: Mapping[str, str], skip: frozenset[str] = frozenset(),
                 names: Sequence[str] | None = None) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for f in fields(Settings):
        raw = env.get(env_name(f.name))
        if raw is None or f.name in skip or (names is not None and f.name not in names):
            continue
        if f.name == "data_dir" and not raw:
            continue   # an empty DVP_GATEWAY_DATA_DIR means the default, not "no directory"
        try:
            changes[f.name] = read_value(f.name, raw)
        except ValueError as exc:
            raise UsageError(f"{env_name(f.name)}: {exc}") from None
    return changes


def from_env(env: Mapping[str, str] | None = None, base: Settings | None = None) -> Settings:
    env = os.environ if env is None else env
    settings = replace(base or Settings(), **_env_changes(env))
    validate(settings)
    return settings


def _default_text(name: str) -> str:
    option = OPTIONS[name]
    if option.default_text:
        return option.default_text
    return str(Settings.__dataclass_fields__[name].default)


def _argparse_reader(name: str) -> Callable[[str], Any]:
    def read(raw: str) -> Any:
        try:
            return OPTIONS[name].read(raw)
        except ValueError as exc:
            # argparse prints this text after "argument --flag:".
            raise argparse.ArgumentTypeError(str(exc)) from None
    return read


def add_flags(parser: argparse.ArgumentParser, names: Sequence[str] | None = None) -> None:
    """One flag per setting (``--grpc-port``...), defaulting to "not given", with its help,
    its default and its env var; flags with a fixed set of values list them."""
    wanted = [f.name for f in fields(Settings) if names is None or f.name in names]
    # The groups in their own order (not the first flag's), empty ones left out.
    groups = {key: parser.add_argument_group(title) for key, title in _GROUP_TITLES.items()
              if any(OPTIONS[name].group == key for name in wanted)}
    for name in wanted:
        option = OPTIONS[name]
        group = groups[option.group]
        # argparse expands %-formats in help text.
        text = f"{option.help} (default: {_default_text(name)}; env {env_name(name)})".replace("%", "%%")
        if isinstance(Settings.__dataclass_fields__[name].default, bool):
            group.add_argument(flag_name(name), dest=name, default=None, action=argparse.BooleanOptionalAction,
                               help=text)
        elif option.choices:
            group.add_argument(flag_name(name), dest=name, default=None, choices=option.choices,
                               type=_CHOICE_FOLD.get(name, str), help=text)
        else:
            group.add_argument(flag_name(name), dest=name, default=None, metavar=option.metavar,
                               type=_argparse_reader(name), help=text)


def from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None,
              names: Sequence[str] | None = None) -> Settings:
    """Defaults, then the env (values a flag overrides are not even read), then the flags
    (already read by ``add_flags``'s argparse types); only ``names`` when given (a
    subcommand's few settings). Raises UsageError."""
    env = os.environ if env is None else env
    given = {f.name: getattr(args, f.name) for f in fields(Settings) if getattr(args, f.name, None) is not None}
    settings = replace(Settings(), **_env_changes(env, skip=frozenset(given), names=names), **given)
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    """What no single value shows: settings that only make sense together."""
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together: give both or neither")
    if settings.tls_client_ca is not None and settings.tls_cert is None:
        raise UsageError("--tls-client-ca needs --tls-cert and --tls-key (client certificates need TLS)")
    if settings.grpc_port and settings.grpc_port == settings.rest_port and settings.grpc_host == settings.rest_host:
        raise UsageError(f"--grpc-port and --rest-port are both {settings.grpc_port} on {settings.grpc_host}: "
                         "the two listeners need two ports")
    if settings.metrics and settings.metrics_port:
        for door, host, port in (("grpc", settings.grpc_host, settings.grpc_port),
                                 ("rest", settings.rest_host, settings.rest_port)):
            if port == settings.metrics_port and host == settings.metrics_host:
                raise UsageError(f"--{door}-port and --metrics-port are both {port} on {host}: "
                                 "each listener needs its own port")
    if settings.otlp_endpoint and not settings.tracing:
        raise UsageError("--otlp-endpoint needs --tracing (spans are only made with tracing on)")


# ---------------------------------------------------------------- TLS material


@dataclass(frozen=True)
class TlsMaterial:
    cert_chain: bytes
    private_key: bytes
    client_ca: bytes | None = field(default=None)


def _read_pem(path: Path, what: str, flag: str, marker: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StartupError(f"{flag}: cannot read {what} {path}: {os_reason(exc)}") from None
    if marker.encode() not in data:
        raise StartupError(f"{flag}: {path} is not a PEM {what} (no '{marker}' block)")
    return data


def load_tls(settings: Settings) -> TlsMaterial | None:
    """The PEM files, each checked to be readable and of the right kind (StartupError);
    whether the key matches the certificate is checked where an SSL context is built."""
    if not settings.tls_enabled:
        return None
    assert settings.tls_cert is not None and settings.tls_key is not None
    cert = _read_pem(settings.tls_cert, "certificate", "--tls-cert", "-----BEGIN CERTIFICATE-----")
    key = _read_pem(settings.tls_key, "private key", "--tls-key", "PRIVATE KEY-----")
    if b"ENCRYPTED" in key:
        raise StartupError(f"--tls-key: {settings.tls_key} is encrypted; give an unencrypted private key")
    ca = (_read_pem(settings.tls_client_ca, "CA certificate", "--tls-client-ca", "-----BEGIN CERTIFICATE-----")
          if settings.tls_client_ca else None)
    return TlsMaterial(cert, key, ca)


def server_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The listeners' TLS context (None without TLS), or StartupError naming the file
    that is wrong: missing, not PEM, encrypted, or a key that is not the certificate's."""
    if load_tls(settings) is None:
        return None
    assert settings.tls_cert is not None and settings.tls_key is not None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        # A password callback: without one OpenSSL would prompt on the terminal.
        ctx.load_cert_chain(settings.tls_cert, settings.tls_key, password=lambda: b"")
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise StartupError(f"--tls-key: {settings.tls_key} is not the key of the certificate in "
                               f"{settings.tls_cert}") from None
        raise StartupError(f"--tls-cert/--tls-key: cannot load {settings.tls_cert} with {settings.tls_key}: "
                           f"{_ssl_reason(exc)}") from None
    except OSError as exc:
        raise StartupError(f"--tls-cert/--tls-key: {os_reason(exc)}") from None
    if settings.tls_client_ca is not None:
        try:
            ctx.load_verify_locations(settings.tls_client_ca)
        except (ssl.SSLError, OSError) as exc:
            reason = _ssl_reason(exc) if isinstance(exc, ssl.SSLError) else os_reason(exc)
            raise StartupError(f"--tls-client-ca: cannot load {settings.tls_client_ca}: {reason}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def os_reason(exc: BaseException) -> str:
    """What went wrong, in the system's words ("address already in use"), else the text."""
    code = exc.errno if isinstance(exc, OSError) else None
    if isinstance(exc, socket.gaierror):
        return str(exc.strerror or exc).lower()
    if isinstance(code, int) and code > 0:
        return os.strerror(code).lower()
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def cluster_flag(settings: Settings) -> str:
    """The flag that says where the cluster is, for a message about it."""
    return "--in-cluster" if settings.in_cluster else "--kubeconfig"


def _ssl_reason(exc: ssl.SSLError) -> str:
    # OpenSSL's reason ("NO_START_LINE"...) when it gives one; else its text without the
    # "(_ssl.c:3905)" that only helps whoever debugs CPython.
    detail = exc.reason or re.sub(r"\s*\(_ssl\.c:\d+\)$", "", str(exc.strerror or exc))
    return f"not valid PEM data ({detail})"


def load_token_file(settings: Settings) -> Authenticator:
    """``--auth static``'s tokens, or StartupError naming the flag and what is wrong."""
    # Imported here, as in load_policy_file: a usage error or --help needs none of the core.
    from service.core.auth import AuthConfigError, StaticTokenAuthenticator

    if settings.token_file is None:
        raise StartupError("--token-file is required with --auth static (the embedded mode creates one)")
    try:
        return StaticTokenAuthenticator.from_file(settings.token_file)
    except AuthConfigError as exc:
        raise StartupError(f"--token-file: {exc}") from None


def load_policy_file(settings: Settings) -> Authorizer:
    """``--auth static``'s policy (default: group admins may do everything), or StartupError."""
    from service.core.auth import AuthConfigError, PolicyAuthorizer

    if settings.policy_file is None:
        return PolicyAuthorizer.allow_all_for_groups("admins")
    try:
        return PolicyAuthorizer.from_file(settings.policy_file)
    except AuthConfigError as exc:
        raise StartupError(f"--policy-file: {exc}") from None
