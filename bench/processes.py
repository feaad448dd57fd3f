"""Start the embedded cluster and the gateway as separate processes, as in production:
the benchmark client then measures the gateway, not an event loop it shares."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.gateway import write_identity_files  # noqa: E402  (the tests' token + policy files)

BIN = Path(sys.executable).parent


@dataclass
class Stack:
    kubeconfig: Path
    grpc_target: str
    rest_url: str
    token: str
    gateway_pid: int = 0  # for benchmarks that watch the processes (bench_export: /proc/<pid>/status)
    cluster_pid: int = 0


def _wait_for(path: Path, process: subprocess.Popen[bytes], what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.05)


@contextmanager
def stack(directory: Path, *, database_url: str = "", step_delay: float = 0.0) -> Iterator[Stack]:
    kubeconfig = directory / "kubeconfig.yaml"
    cluster = subprocess.Popen(
        [str(BIN / "python"), "-m", "service.embedded_cluster", "serve", "--no-tls", "--port", "0", "--step-delay",
         str(step_delay), "--kubeconfig-out", str(kubeconfig)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    gateway: subprocess.Popen[bytes] | None = None
    try:
        _wait_for(kubeconfig, cluster, "the embedded cluster")
        token_file, policy_file, tokens = write_identity_files(directory)
        gateway = subprocess.Popen(
            [str(BIN / "dvp-gateway"), "serve", "--data-dir", str(directory), "--kubeconfig", str(kubeconfig),
             "--token-file", str(token_file), "--policy-file", str(policy_file), "--grpc-port", "0",
             "--rest-port", "0", "--log-level", "WARNING", "--database-url",
             database_url or f"sqlite+aiosqlite:///{directory / 'gateway.db'}"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert gateway.stdout is not None
        ports: dict[str, str] = {}
        while len(ports) < 2:
            line = gateway.stdout.readline().decode()
            if not line:
                raise RuntimeError("the gateway exited before listening")
            if m := re.search(r"^gRPC\s+listening on (\S+)", line):
                ports["grpc"] = m.group(1)
            if m := re.search(r"^REST\s+listening on (http://\S+)/v1", line):
                ports["rest"] = m.group(1)
        yield Stack(kubeconfig, ports["grpc"], ports["rest"], tokens["dev"], gateway.pid, cluster.pid)
    finally:
        for process in (gateway, cluster):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
