"""Start the embedded cluster and the gateway as separate processes, as in production:
the benchmark client then measures the gateway, not an event loop it shares.

``stack`` is the one-shot setup of the benchmarks (bench_create, bench_clone,
bench_export). ``embedded_cluster_process`` and ``GatewayProcess`` are its parts, for
harnesses that need more than one gateway, fixed ports, or to kill -9 a gateway and
start it again on the same database and cluster (bench/chaos.py, tests/test_replicas.py).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.gateway import write_identity_files  # noqa: E402  (the tests' token + policy files)

BIN = Path(sys.executable).parent
_GRPC_LINE = re.compile(r"^gRPC\s+listening on [^\s:]+:(\d+)\b", re.MULTILINE)
_REST_LINE = re.compile(r"^REST\s+listening on http://\S+:(\d+)/v1", re.MULTILINE)
_PR_SET_PDEATHSIG = 1


@dataclass
class Stack:
    kubeconfig: Path
    grpc_target: str
    rest_url: str
    token: str
    gateway_pid: int = 0  # for benchmarks that watch the processes (bench_export: /proc/<pid>/status)
    cluster_pid: int = 0


@dataclass
class ClusterProcess:
    process: subprocess.Popen[bytes]
    kubeconfig: Path

    @property
    def pid(self) -> int:
        return self.process.pid


# Looked up here, not in the forked child (no dynamic loading between fork and exec).
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


def _die_with_parent() -> None:
    """preexec_fn: the child gets SIGKILL when the harness dies, however it dies (a killed
    benchmark or test leaves no gateway or cluster behind)."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    """A port nothing listens on now (another process may take it before we bind: rare)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_for(path: Path, process: subprocess.Popen[bytes], what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes] | None, timeout: float = 20.0) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


def child_env(pythonpath: Path | None = None) -> dict[str, str]:
    """The environment of a child process; ``pythonpath`` puts another copy of the sources
    (e.g. ``git archive HEAD``) ahead of the editable install."""
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(pythonpath), env.get("PYTHONPATH", "")) if p)
    return env


@contextmanager
def embedded_cluster_process(directory: Path, *, step_delay: float = 0.0,
                             env: Mapping[str, str] | None = None) -> Iterator[ClusterProcess]:
    """``dvp-gateway embedded-cluster serve`` (plain HTTP, a free port, the demo seed),
    terminated on leaving."""
    kubeconfig = directory / "kubeconfig.yaml"
    log = (directory / "cluster.log").open("ab")
    cluster = subprocess.Popen(
        [str(BIN / "dvp-gateway"), "embedded-cluster", "serve", "--no-tls", "--port", "0", "--step-delay",
         str(step_delay), "--kubeconfig-out", str(kubeconfig)],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=dict(env) if env is not None else None,
        preexec_fn=_die_with_parent)
    try:
        _wait_for(kubeconfig, cluster, "the embedded cluster")
        yield ClusterProcess(cluster, kubeconfig)
    finally:
        _stop(cluster)
        log.close()


class GatewayProcess:
    """One ``dvp-gateway serve`` process that can be started, killed (SIGKILL) and started
    again with the same settings. Each start ("incarnation") writes its own
    ``<name>-<n>.out`` / ``<name>-<n>.err`` in ``directory``. Ports given as 0 are chosen
    once by the OS at the first start and kept for the restarts (a restarted gateway serves
    at the same address, as a restarted pod behind its Service does)."""

    def __init__(self, directory: Path, kubeconfig: Path, *, database_url: str = "", name: str = "gateway",
                 grpc_port: int = 0, rest_port: int = 0, log_level: str = "WARNING",
                 extra_args: Sequence[str] = (), env: Mapping[str, str] | None = None,
                 identity: tuple[Path, Path, dict[str, str]] | None = None) -> None:
        self.directory = directory
        self.kubeconfig = kubeconfig
        self.database_url = database_url or f"sqlite+aiosqlite:///{directory / 'gateway.db'}"
        self.name = name
        self.grpc_port = grpc_port
        self.rest_port = rest_port
        self.log_level = log_level
        self.extra_args = list(extra_args)
        self.env = dict(env) if env is not None else None
        self.token_file, self.policy_file, self.tokens = identity or write_identity_files(directory)
        self.process: subprocess.Popen[bytes] | None = None
        self.incarnation = 0
        self.started_at = 0.0   # time.monotonic() when the current incarnation was listening
        self.start_seconds: list[float] = []  # spawn -> listening, per incarnation

    @property
    def token(self) -> str:
        return self.tokens["dev"]

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def out_path(self, incarnation: int | None = None) -> Path:
        return self.directory / f"{self.name}-{incarnation or self.incarnation}.out"

    def err_path(self, incarnation: int | None = None) -> Path:
        return self.directory / f"{self.name}-{incarnation or self.incarnation}.err"

    def command(self) -> list[str]:
        return [str(BIN / "dvp-gateway"), "serve", "--data-dir", str(self.directory), "--kubeconfig",
                str(self.kubeconfig), "--token-file", str(self.token_file), "--policy-file", str(self.policy_file),
                "--grpc-port", str(self.grpc_port), "--rest-port", str(self.rest_port), "--metrics-port", "0",
                "--log-level",
                self.log_level, "--database-url", self.database_url, *self.extra_args]

    def spawn(self) -> None:
        """Start a new incarnation (not yet listening: see ``wait_listening``)."""
        if self.alive:
            raise RuntimeError(f"{self.name} is still running")
        self.incarnation += 1
        with self.out_path().open("wb") as out, self.err_path().open("wb") as err:
            self.process = subprocess.Popen(self.command(), cwd=REPO, stdout=out, stderr=err,
                                            stdin=subprocess.DEVNULL, env=self.env, preexec_fn=_die_with_parent)
        self._spawned_at = time.monotonic()

    def _listening(self) -> bool:
        text = self.out_path().read_text(errors="replace")
        grpc_match, rest_match = _GRPC_LINE.search(text), _REST_LINE.search(text)
        if grpc_match is None or rest_match is None:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} (incarnation {self.incarnation}) exited with "
                                   f"{self.process.returncode} before listening: "
                                   f"{self.err_path().read_text(errors='replace')[-3000:]}")
            return False
        self.grpc_port, self.rest_port = int(grpc_match.group(1)), int(rest_match.group(1))
        self.started_at = time.monotonic()
        self.start_seconds.append(self.started_at - self._spawned_at)
        return True

    def wait_listening(self, limit: float = 90.0) -> None:
        deadline = time.monotonic() + limit
        while not self._listening():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not listen within {limit} s")
            time.sleep(0.05)

    async def wait_listening_async(self, limit: float = 90.0) -> None:
        deadline = time.monotonic() + limit
        while not self._listening():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not listen within {limit} s")
            await asyncio.sleep(0.05)

    def start(self, limit: float = 90.0) -> None:
        self.spawn()
        self.wait_listening(limit)

    async def start_async(self, limit: float = 90.0) -> None:
        self.spawn()
        await self.wait_listening_async(limit)

    def kill(self) -> None:
        """kill -9: no shutdown, no lease release, transactions cut where they are."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self, timeout: float = 20.0) -> None:
        """A graceful stop (SIGTERM), SIGKILL after ``timeout``."""
        _stop(self.process, timeout)


@contextmanager
def stack(directory: Path, *, database_url: str = "", step_delay: float = 0.0) -> Iterator[Stack]:
    with embedded_cluster_process(directory, step_delay=step_delay) as cluster:
        gateway = GatewayProcess(directory, cluster.kubeconfig, database_url=database_url)
        try:
            gateway.start(limit=60.0)
            yield Stack(cluster.kubeconfig, gateway.grpc_target, gateway.rest_url, gateway.token, gateway.pid,
                        cluster.pid)
        finally:
            gateway.stop()
