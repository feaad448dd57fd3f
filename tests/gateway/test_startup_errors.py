"""Start-up errors, through the real ``dvp-gateway serve`` process: one line on stderr
(``dvp-gateway: ...``, never a traceback), exit 2 for a refused flag or env value, 1 for
what a value points to (a file, a port, the database), whatever had started stopped
first. Cases run concurrently: each is mostly a Python interpreter starting."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from service.settings import OPTIONS, Settings, env_name, flag_name

ROOT = Path(__file__).resolve().parents[2]
# A start that hangs fails the test instead of the suite's 120 s timeout.
DEADLINE = 90.0
# Interpreters at once: the machine has two cores, and other tests run beside these.
PARALLEL = 4
_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    expect: tuple[str, ...]           # substrings of the error line
    env: Mapping[str, str] = field(default_factory=dict)
    code: int = 1


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str
    seconds: float


def _clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    # Not in a pod (for --in-cluster), and no setting but the case's own.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DVP_GATEWAY_", "KUBERNETES_SERVICE_"))}
    env.update(extra)
    return env


async def serve(args: Sequence[str], data_dir: Path, env: Mapping[str, str] | None = None) -> Outcome:
    """``dvp-gateway serve ARGS --data-dir DATA_DIR`` to its end (killed at DEADLINE)."""
    async with _gates.setdefault(asyncio.get_running_loop(), asyncio.Semaphore(PARALLEL)):
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            # A free metrics port: many of these run at once (a case may still give its own).
            sys.executable, "-m", "service.cli", "serve", "--data-dir", str(data_dir), "--metrics-port", "0", *args,
            cwd=ROOT, env=_clean_env(env or {}), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), DEADLINE)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            pytest.fail(f"serve {' '.join(args)} did not end within {DEADLINE} s")
        assert proc.returncode is not None
        return Outcome(proc.returncode, out.decode(), err.decode(), time.monotonic() - started)


def assert_one_line(case: Case, outcome: Outcome) -> None:
    what = f"serve {' '.join(case.args)} {dict(case.env)}"
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    assert outcome.code == case.code, f"{what}: exit {outcome.code}, stderr {outcome.stderr!r}"
    assert len(lines) == 1 and "Traceback" not in outcome.stderr, f"{what}: stderr {outcome.stderr!r}"
    assert lines[0].startswith("dvp-gateway: "), f"{what}: {lines[0]!r}"
    for part in case.expect:
        assert part in lines[0], f"{what}: {part!r} not in {lines[0]!r}"


async def run_cases(cases: Sequence[Case], tmp_path: Path) -> None:
    outcomes = await asyncio.gather(*(serve(case.args, tmp_path / f"data-{i}", case.env)
                                      for i, case in enumerate(cases)))
    for case, outcome in zip(cases, outcomes, strict=True):
        assert_one_line(case, outcome)


# ---------------------------------------------------------------- files the cases use


def _self_signed(name: str) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


@dataclass(frozen=True)
class Files:
    kubeconfig: Path        # valid, pointing at a closed port (loading it needs no network)
    garbage: Path
    not_kubeconfig: Path
    cert: Path
    key: Path
    other_key: Path
    plain_file: Path


@pytest.fixture
def files(tmp_path: Path) -> Files:
    d = tmp_path / "files"
    d.mkdir()
    (d / "kubeconfig.yaml").write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: dev\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: not-a-real-token}}]\n"
        "contexts: [{name: dev, context: {cluster: c, user: u}}]\n")
    (d / "garbage.yaml").write_text("clusters: [\n  {name: \n")
    (d / "list.yaml").write_text("- just\n- a list\n")
    cert, key = _self_signed("gateway")
    _, other_key = _self_signed("someone-else")
    (d / "cert.pem").write_bytes(cert)
    (d / "key.pem").write_bytes(key)
    (d / "other-key.pem").write_bytes(other_key)
    (d / "plain").write_text("not a directory\n")
    return Files(d / "kubeconfig.yaml", d / "garbage.yaml", d / "list.yaml", d / "cert.pem", d / "key.pem",
                 d / "other-key.pem", d / "plain")


# ---------------------------------------------------------------- exit 2: refused values


async def test_refused_flag_and_env_values_are_one_line_and_exit_2(tmp_path: Path) -> None:
    # One of each kind of reader; test_settings_and_logs has every setting in-process.
    cases = [
        Case(("--grpc-port", "abc"), ("--grpc-port", "'abc'", "0 to 65535"), code=2),
        Case(("--grpc-port", "70000"), ("--grpc-port", "'70000'"), code=2),
        Case(("--log-level", "LOUD"), ("--log-level", "'LOUD'", "DEBUG", "ERROR"), code=2),
        Case(("--auth", "magic"), ("--auth", "static", "kubernetes"), code=2),
        Case(("--shutdown-grace", "-1"), ("--shutdown-grace", "'-1'"), code=2),
        Case(("--reconcile-interval", "0"), ("--reconcile-interval", "more than 0"), code=2),
        Case(("--export-max-concurrent", "0"), ("--export-max-concurrent", "'0'"), code=2),
        Case(("--tls-cert", "/some/cert.pem"), ("--tls-cert and --tls-key",), code=2),
        Case(("--no-such-flag",), ("unrecognized arguments: --no-such-flag",), code=2),
        # The same through the environment, named by its variable.
        Case((), ("DVP_GATEWAY_GRPC_PORT", "'fifty'"), {"DVP_GATEWAY_GRPC_PORT": "fifty"}, code=2),
        Case((), ("DVP_GATEWAY_LOG_LEVEL", "'LOUD'"), {"DVP_GATEWAY_LOG_LEVEL": "LOUD"}, code=2),
        Case((), ("DVP_GATEWAY_SHUTDOWN_GRACE", "'-1'"), {"DVP_GATEWAY_SHUTDOWN_GRACE": "-1"}, code=2),
    ]
    await run_cases(cases, tmp_path)


# ---------------------------------------------------------------- exit 1: what values point to


async def test_broken_files_dirs_and_database_are_one_line_and_exit_1(tmp_path: Path, files: Files) -> None:
    kube = ("--kubeconfig", str(files.kubeconfig))
    tls = ("--tls-cert", str(files.cert), "--tls-key", str(files.key))
    bad_tokens = tmp_path / "tokens-bad-yaml.yaml"
    bad_tokens.write_text("tokens: [\n  - subject: a\n    token: {\n")
    wrong_tokens = tmp_path / "tokens-wrong-shape.yaml"
    wrong_tokens.write_text("tokens:\n  - subject: a\n    token: short\n")
    bad_policy = tmp_path / "policy.yaml"
    bad_policy.write_text("rules: everything\n")
    cases = [
        Case(("--kubeconfig", "/nonexistent/kubeconfig"),
             ("--kubeconfig", "/nonexistent/kubeconfig", "no such file")),
        Case(("--kubeconfig", str(files.garbage)), ("--kubeconfig", str(files.garbage), "not valid YAML")),
        Case(("--kubeconfig", str(files.not_kubeconfig)), ("--kubeconfig", "not a kubeconfig")),
        Case((*kube, "--kube-context", "prod"), ("--kubeconfig", "no context 'prod'", "dev")),
        Case((), ("--kubeconfig", "no such file"), {"DVP_GATEWAY_KUBECONFIG": "/nonexistent/kubeconfig"}),
        Case((*kube, "--token-file", "/nonexistent/tokens.yaml"), ("--token-file", "no such file")),
        Case((*kube, "--token-file", str(bad_tokens)), ("--token-file", "not valid YAML", "line")),
        Case((*kube, "--token-file", str(wrong_tokens)), ("--token-file", "tokens[0].token")),
        Case((*kube, "--policy-file", str(bad_policy)), ("--policy-file", "'rules' list")),
        Case((*kube, "--tls-cert", "/nonexistent/cert.pem", "--tls-key", str(files.key)),
             ("--tls-cert", "/nonexistent/cert.pem", "no such file")),
        Case((*kube, "--tls-cert", str(files.cert), "--tls-key", str(files.other_key)),
             ("--tls-key", str(files.other_key), "not the key of the certificate")),
        Case((*kube, *tls, "--tls-client-ca", str(files.garbage)), ("--tls-client-ca", "not a PEM")),
        Case((*kube, "--data-dir", str(files.plain_file / "sub")), ("--data-dir", "cannot write", "not a directory")),
        Case(("--in-cluster",), ("--in-cluster", "not available")),
    ]
    if os.geteuid() != 0:   # root writes anywhere: only a non-root run can test permissions
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        cases.append(Case((*kube, "--data-dir", str(locked / "var")), ("--data-dir", "permission denied")))
    # An unreachable database: refused at once, named without its password.
    database = Case((*kube, "--database-url", "postgresql://nobody:hunter2@127.0.0.1:1/x"),
                    ("cannot open the database", "postgresql+asyncpg://nobody:***@127.0.0.1:1/x", "connection refused"))
    # The last --data-dir wins over serve()'s own.
    _, outcome = await asyncio.gather(run_cases(cases, tmp_path), serve(database.args, tmp_path / "db"))
    assert_one_line(database, outcome)
    assert "hunter2" not in outcome.stderr + outcome.stdout


@contextlib.contextmanager
def port_in_use() -> Iterator[int]:
    """A port another process listens on (as a listener would: SO_REUSEADDR set)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


async def test_ports_in_use_are_one_line_after_stopping_what_had_started(tmp_path: Path, files: Files) -> None:
    """The embedded cluster, the database and the gateway start before a listener finds its
    port taken; all are stopped, and nothing else reaches stderr (no unclosed session, no
    pending task). At DEBUG the held log lines come first: the gateway stopped, then the error.
    Beside them (a full start too, so at the same time) a start with TLS, whose banner says so."""
    quick = ("--embedded-step-delay", "0")
    with port_in_use() as busy:
        grpc_busy = Case((*quick, "--grpc-port", str(busy), "--rest-port", "0"),
                         (f"cannot listen on 127.0.0.1:{busy} (gRPC): address already in use",))
        rest_busy = (*quick, "--grpc-port", "0", "--rest-port", str(busy),
                     "--log-level", "debug", "--log-format", "text")
        # A case's own --metrics-port comes after serve()'s "0", so it wins.
        metrics_busy = Case((*quick, "--grpc-port", "0", "--rest-port", "0", "--metrics-port", str(busy)),
                            (f"cannot listen on 127.0.0.1:{busy} (metrics): address already in use",))
        embedded_busy = Case((*quick, "--grpc-port", "0", "--rest-port", "0", "--embedded-port", str(busy)),
                             (f"cannot listen on 127.0.0.1:{busy} (embedded cluster, --embedded-port): "
                              "address already in use",))
        grpc_outcome, rest_outcome, metrics_outcome, embedded_outcome, _ = await asyncio.gather(
            serve(grpc_busy.args, tmp_path / "a"), serve(rest_busy, tmp_path / "b"),
            serve(metrics_busy.args, tmp_path / "d"), serve(embedded_busy.args, tmp_path / "e"),
            check_tls_banner(tmp_path / "c", files))
    assert_one_line(grpc_busy, grpc_outcome)
    assert_one_line(metrics_busy, metrics_outcome)
    assert_one_line(embedded_busy, embedded_outcome)
    lines = rest_outcome.stderr.splitlines()
    assert rest_outcome.code == 1 and "Traceback" not in rest_outcome.stderr, rest_outcome.stderr[-3000:]
    assert lines[-1] == f"dvp-gateway: cannot listen on 127.0.0.1:{busy} (REST): address already in use", lines[-3:]
    assert any("gateway stopped" in line for line in lines[:-1]), rest_outcome.stderr[-3000:]


async def check_tls_banner(data_dir: Path, files: Files) -> None:
    """With TLS the banner says https for REST and TLS for gRPC, and is true; SIGTERM ends it (0)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.cli", "serve", "--data-dir", str(data_dir), "--grpc-port", "0",
        "--rest-port", "0", "--metrics-port", "0", "--embedded-step-delay", "0", "--tls-cert", str(files.cert),
        "--tls-key", str(files.key),
        cwd=ROOT, env=_clean_env({}), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    assert proc.stdout is not None
    try:
        banner: list[str] = []
        async with asyncio.timeout(DEADLINE):
            while not banner or not banner[-1].startswith("dev bearer token"):
                line = (await proc.stdout.readline()).decode()
                assert line, f"serve ended before its banner: {banner}"
                banner.append(line.rstrip())
        grpc_line, rest_line = banner[0], banner[1]
        assert grpc_line.startswith("gRPC  listening on 127.0.0.1:") and grpc_line.endswith(" (TLS)"), banner
        assert rest_line.startswith("REST  listening on https://127.0.0.1:"), banner
        # The banner is true: the REST URL it prints answers over TLS.
        url = rest_line.split()[3].removesuffix("/v1") + "/openapi.yaml"
        context = ssl.create_default_context(cafile=str(files.cert))
        async with aiohttp.ClientSession() as http, http.get(url, ssl=context) as response:
            assert response.status == 200
        # And so is its metrics line (plain HTTP, on a port of its own).
        metrics = [line for line in banner if line.startswith("metrics at http://127.0.0.1:")]
        assert len(metrics) == 1 and metrics[0].endswith("/metrics"), banner
        async with aiohttp.ClientSession() as http, http.get(metrics[0].split()[2]) as response:
            assert response.status == 200 and "dvp_gateway_requests_total" in await response.text()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(DEADLINE):
            assert await proc.wait() == 0


def test_help_describes_every_flag_with_its_default_env_and_choices() -> None:
    done = subprocess.run([sys.executable, "-m", "service.cli", "serve", "--help"], cwd=ROOT, env=_clean_env({}),
                          capture_output=True, text=True, timeout=DEADLINE, check=False)
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())   # argparse wraps lines: compare with whitespace folded
    for f in fields(Settings):
        option = OPTIONS[f.name]
        assert flag_name(f.name) in text, f.name
        # Its description in words, then its default and env var, in that order.
        described = " ".join(option.help.split())
        assert described in text, f"{flag_name(f.name)}: {described!r} not in the help"
        tail = text[text.index(described) + len(described):]
        assert tail.lstrip().startswith("(default: ") and env_name(f.name) in tail[:200], f.name
    for choices in ("--log-format {json,text}", "--log-level {DEBUG,INFO,WARNING,ERROR}",
                    "--auth {static,kubernetes}"):
        assert choices in text, choices
    assert "PosixPath" not in text and "default: var;" in text
