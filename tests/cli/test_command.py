"""``dvp-gateway download`` as a process, before any transfer: usage errors are exit code 2
and one line on stderr; an unreachable gateway is exit code 1 and one line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from service.client.command import default_server
from service.settings import Settings

GATEWAY = Path(sys.executable).parent / "dvp-gateway"


def _run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DVP_GATEWAY_")}
    return subprocess.run([str(GATEWAY), "download", *args], capture_output=True, text=True, timeout=60,
                          check=False, env={**base, **(env or {})}, cwd=cwd)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(("args", "message"), [
    (["disk", "x"], "error: the following arguments are required: -n/--namespace, -o/--output"),
    (["vm", "x", "-n", "demo", "-o", "x.img"], "error: argument kind: invalid choice: 'vm'"),
    (["disk", "x", "-n", "demo", "-o", "x.img", "--retries", "-1"], "error: argument --retries: must not be negative"),
    (["disk", "x", "-n", "demo", "-o", "x.img", "--token", "t", "--ttl", "2m"], "error: --ttl: expected seconds"),
    (["disk", "x", "-n", "demo", "-o", "x.img", "--token", "t", "--server", "ftp://h"], "error: --server: expected"),
    (["disk", "x", "-n", "demo", "-o", "x.img"], "error: no bearer token: give --token-file PATH or --token"),
    (["disk", "x", "-n", "demo", "-o", "x.img", "--token-file", "/nonexistent/token"],
     "error: --token-file: cannot read /nonexistent/token"),
])
def test_usage_errors_are_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = _run(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(message), result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_gateway_is_one_line_and_exit_1(tmp_path: Path) -> None:
    port = _free_port()
    result = _run("disk", "x", "-n", "demo", "-o", str(tmp_path / "x.img"),
                  env={"DVP_GATEWAY_URL": f"http://127.0.0.1:{port}", "DVP_GATEWAY_TOKEN": "t"})
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: cannot connect to http://127.0.0.1:{port}"), result.stderr
    assert result.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == [], "a failure before the first byte leaves no part file"


def test_the_default_server_is_the_rest_listener_default() -> None:
    settings = Settings()
    assert default_server() == f"http://{settings.rest_host}:{settings.rest_port}" == "http://127.0.0.1:8080"


def test_download_is_listed_and_has_help() -> None:
    listed = subprocess.run([str(GATEWAY), "--help"], capture_output=True, text=True, timeout=60, check=True)
    assert "download" in listed.stdout
    helped = subprocess.run([str(GATEWAY), "download", "--help"], capture_output=True, text=True, timeout=60,
                            check=True)
    assert "exit codes: 0 done, 1 failed, 2 usage, 3 checksum mismatch" in helped.stdout
