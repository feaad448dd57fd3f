"""A newcomer's first minutes, end to end with real processes: the README's serve
command on its embedded defaults, the guide's disk snapshot made through curl and
through the gRPC example, and kubectl seeing the custom resource, which validates
against the full upstream CRD."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from service.embedded_cluster.schema import SchemaAdmission
from service.embedded_cluster.schema.loader import resource_types_of
from tests.support.banner import read_banner, stop_gracefully

REPO = Path(__file__).resolve().parents[1]
UPSTREAM_CRDS = REPO.parent / "shared" / "crds"
GATEWAY = Path(sys.executable).parent / "dvp-gateway"


@dataclass
class Served:
    process: subprocess.Popen[str]
    grpc: str
    rest: str
    kubeconfig: str
    token: str


BANNER = {
    "grpc": re.compile(r"^gRPC\s+listening on (\S+)"),
    "rest": re.compile(r"^REST\s+listening on (http://\S+)/v1"),
    "kubeconfig": re.compile(r"kubectl --kubeconfig (\S+)\)"),
    "token": re.compile(r"^dev bearer token: (\S+)"),
}


def _read_banner(process: subprocess.Popen[str], deadline: float, seen: list[str] | None = None) -> dict[str, str]:
    return read_banner(process, BANNER, deadline, seen)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    process = subprocess.Popen(
        [str(GATEWAY), "serve", "--data-dir", str(tmp_path / "var"), "--grpc-port", "0", "--rest-port", "0",
         "--metrics-port", "0",
         "--embedded-step-delay", "0", "--log-format", "text"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        banner = _read_banner(process, time.monotonic() + 60)
        yield Served(process, **banner)
    finally:
        assert stop_gracefully(process, 20), "the gateway did not stop on SIGTERM within 20 s"


def _kubectl(served: Served, *args: str) -> str:
    result = subprocess.run(["kubectl", "--kubeconfig", served.kubeconfig, *args],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _wait_ready(served: Served, name: str) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while True:
        obj: dict[str, object] = json.loads(_kubectl(served, "-n", "demo", "get", "vdsnapshot", name, "-o", "json"))
        if obj.get("status", {}).get("phase") == "Ready":  # type: ignore[union-attr]
            return obj
        assert time.monotonic() < deadline, f"{name} never became Ready: {obj.get('status')}"
        time.sleep(0.2)


def test_readme_quick_start(served: Served) -> None:
    # The guide's example through curl, exactly as the README shows it.
    curl = subprocess.run(
        ["curl", "-sS", "-i", "-X", "POST", f"{served.rest}/v1/namespaces/demo/disk-snapshots",
         "-H", f"Authorization: Bearer {served.token}", "-H", "Content-Type: application/json",
         "-H", "Idempotency-Key: first-snapshot",
         "-d", json.dumps({"name": "linux-vm-root-snapshot", "virtualDiskName": "linux-vm-root",
                           "requiredConsistency": True})],
        capture_output=True, text=True, timeout=30, check=True)
    head, _, body = curl.stdout.partition("\n\n")  # text mode folds CRLF
    assert head.startswith("HTTP/1.1 202"), head
    operation = json.loads(body)
    assert f"Location: /v1/operations/{operation['id']}" in head
    assert operation["resource"]["kind"] == "VirtualDiskSnapshot"

    # The same through gRPC, with the README's example client.
    example = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "grpc-example.py"), "--target", served.grpc,
         "--token", served.token, "--name", "linux-vm-root-snapshot-grpc"],
        capture_output=True, text=True, timeout=60, check=False, cwd=REPO)
    assert example.returncode == 0, example.stdout + example.stderr
    assert "SUCCEEDED phase=Ready" in example.stdout

    # kubectl sees both custom resources with the guide's columns.
    table = _kubectl(served, "-n", "demo", "get", "vdsnapshot")
    assert table.split("\n")[0].split() == ["NAME", "PHASE", "CONSISTENT", "AGE"]
    assert "linux-vm-root-snapshot " in table and "linux-vm-root-snapshot-grpc" in table

    # What the gateway wrote is valid against the full upstream CRD (with descriptions).
    obj = _wait_ready(served, "linux-vm-root-snapshot")
    crd = yaml.safe_load((UPSTREAM_CRDS / "virtualdisksnapshots.yaml").read_text())
    (rtype,) = resource_types_of(crd, "upstream")
    admission = SchemaAdmission()
    admitted = admission.admit(rtype, obj, None)
    assert admitted["spec"] == obj["spec"], "the upstream schema pruned or changed the spec"
    admitted_status = admission.admit(rtype, obj, obj, subresource="status")
    assert admitted_status["status"] == obj["status"], "the upstream schema pruned or changed the status"


def test_sigterm_stops_cleanly(served: Served) -> None:
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(timeout=20) == 0


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_banner_and_logs_never_show_the_database_password(database_url: str, tmp_path: Path) -> None:
    from sqlalchemy.engine import make_url

    # The throwaway server trusts 127.0.0.1, so any password works and must stay hidden.
    url = make_url(database_url).set(password="hunter2-not-for-logs").render_as_string(hide_password=False)
    process = subprocess.Popen(
        [str(GATEWAY), "serve", "--data-dir", str(tmp_path / "var"), "--grpc-port", "0", "--rest-port", "0",
         "--metrics-port", "0",
         "--embedded-step-delay", "0", "--database-url", url],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    banner: list[str] = []
    try:
        _read_banner(process, time.monotonic() + 60, banner)
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "hunter2-not-for-logs" not in "".join(banner) + out + err
    assert any(line.startswith("store postgresql+asyncpg://") and "***" in line for line in banner), banner
