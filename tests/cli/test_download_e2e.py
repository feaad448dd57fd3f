"""``dvp-gateway download`` end to end: real processes against a real gateway (``dvp-gateway
serve`` on its embedded cluster), checked against the deterministic disk content.

Disks are made for each test in the demo namespace (``spec.persistentVolumeClaim.size``,
no data source): unattached, so they can be exported; their bytes derive from the content
seed the cluster writes in an annotation.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from service.client.partfile import PartMeta, PartPaths, save_meta
from service.embedded_cluster.controllers.content import STRIPE, disk_sha256, iter_disk_content
from service.embedded_cluster.controllers.kube import parse_quantity
from service.embedded_cluster.controllers.resources import ANN_CONTENT_SEED
from tests.support.banner import read_banner, stop_gracefully

GATEWAY = Path(sys.executable).parent / "dvp-gateway"
KUBECTL = "kubectl"
NS = "demo"
MiB = 1 << 20


@dataclass
class Served:
    rest: str
    kubeconfig: str
    token_file: Path


@dataclass(frozen=True)
class Disk:
    name: str
    seed: str
    size: int


BANNER = {"rest": re.compile(r"^REST\s+listening on (http://\S+)/v1"),
          "kubeconfig": re.compile(r"kubectl --kubeconfig (\S+)\)")}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    directory = tmp_path_factory.mktemp("gateway")
    process = subprocess.Popen(
        [str(GATEWAY), "serve", "--data-dir", str(directory / "var"), "--grpc-port", "0", "--rest-port", "0",
         "--metrics-port", "0", "--embedded-step-delay", "0", "--log-format", "text"],
        cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        banner = read_banner(process, BANNER, time.monotonic() + 60)
        served = Served(banner["rest"], banner["kubeconfig"], directory / "var" / "dev-token")
        yield served
    finally:
        stop_gracefully(process, 20)


def _kubectl(served: Served, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run([KUBECTL, "--kubeconfig", served.kubeconfig, *args], input=stdin,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _make_disk(served: Served, name: str, size: str) -> Disk:
    manifest = {"apiVersion": "virtualization.deckhouse.io/v1alpha2", "kind": "VirtualDisk",
                "metadata": {"name": name, "namespace": NS}, "spec": {"persistentVolumeClaim": {"size": size}}}
    _kubectl(served, "apply", "-f", "-", stdin=json.dumps(manifest))
    deadline = time.monotonic() + 30
    while True:
        disk = json.loads(_kubectl(served, "-n", NS, "get", "virtualdisk", name, "-o", "json"))
        seed = (disk["metadata"].get("annotations") or {}).get(ANN_CONTENT_SEED)
        if disk.get("status", {}).get("phase") == "Ready" and seed:
            return Disk(name, seed, parse_quantity(disk["status"]["capacity"]) or 0)
        assert time.monotonic() < deadline, f"disk {name} never became Ready: {disk.get('status')}"
        time.sleep(0.2)


def _command(served: Served, kind: str, name: str, output: Path, *flags: str) -> list[str]:
    return [str(GATEWAY), "download", kind, name, "-n", NS, "-o", str(output),
            "--server", served.rest, "--token-file", str(served.token_file), *flags]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("DVP_GATEWAY_")}


def _download(served: Served, kind: str, name: str, output: Path, *flags: str,
              timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_command(served, kind, name, output, *flags), capture_output=True, text=True,
                          timeout=timeout, check=False, env=_env())


def _one_line(stderr: str) -> str:
    assert stderr.count("\n") == 1 and stderr.endswith("\n"), f"expected one line on stderr, got {stderr!r}"
    assert "Traceback" not in stderr
    return stderr.rstrip("\n")


def _assert_same_bytes(path: Path, disk: Disk) -> None:
    assert path.stat().st_size == disk.size
    with path.open("rb") as f:
        for number, expected in enumerate(iter_disk_content(disk.seed, disk.size, chunk=4 * MiB)):
            assert f.read(len(expected)) == expected, f"the bytes differ in the {number}th 4 MiB"


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(16 * MiB):
            digest.update(chunk)
    return digest.hexdigest()


def _assert_sparse(path: Path, disk: Disk) -> None:
    # One 64 KiB data block per 64 MiB stripe; the rest must be holes (allow filesystem slack).
    data_blocks = -(-disk.size // STRIPE)
    allocated = path.stat().st_blocks * 512
    assert allocated <= data_blocks * 256 * 1024, f"{allocated} bytes allocated for {data_blocks} data blocks"


def _etag(served: Served, disk: Disk) -> str:
    """The content's ETag, from a one-byte ranged export (the last byte)."""
    request = urllib.request.Request(
        f"{served.rest}/v1/namespaces/{NS}/disks/{disk.name}:export",
        headers={"Authorization": f"Bearer {served.token_file.read_text().strip()}",
                 "Range": f"bytes={disk.size - 1}-"})
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 206
        response.read()
        return str(response.headers["ETag"])


@pytest.mark.timeout(300)
def test_full_download_is_byte_identical_sparse_and_verified(served: Served, tmp_path: Path) -> None:
    disk = _make_disk(served, "dl-full", "1Gi")
    output = tmp_path / "full.img"
    result = _download(served, "disk", disk.name, output)
    assert result.returncode == 0, result.stderr
    line = _one_line(result.stderr)
    assert line.startswith(f"downloaded disk {NS}/{disk.name} to {output}: 1.0 GiB"), line
    assert f"sha256 {disk_sha256(disk.seed, disk.size)} verified" in line, line
    assert result.stdout == ""
    _assert_same_bytes(output, disk)
    _assert_sparse(output, disk)
    assert sorted(tmp_path.iterdir()) == [output], "the part file and its sidecar are gone"


@pytest.mark.timeout(300)
def test_disk_snapshot_download_through_the_environment(served: Served, tmp_path: Path) -> None:
    disk = _make_disk(served, "dl-snap-source", "512Mi")
    body = json.dumps({"name": "dl-snap", "virtualDiskName": disk.name, "requiredConsistency": False}).encode()
    token = served.token_file.read_text().strip()
    request = urllib.request.Request(f"{served.rest}/v1/namespaces/{NS}/disk-snapshots", data=body, method="POST",
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                                              "Idempotency-Key": "dl-snap"})
    with urllib.request.urlopen(request, timeout=30) as response:
        operation = json.loads(response.read())
    deadline = time.monotonic() + 60
    while not operation["done"]:
        assert time.monotonic() < deadline, f"the snapshot never finished: {operation}"
        time.sleep(0.2)
        get = urllib.request.Request(f"{served.rest}/v1/operations/{operation['id']}",
                                     headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(get, timeout=30) as response:
            operation = json.loads(response.read())
    assert operation["state"] == "SUCCEEDED", operation

    # Server and token from the environment, as the docs show; --ttl goes through.
    output = tmp_path / "snap.img"
    result = subprocess.run(
        [str(GATEWAY), "download", "disk-snapshot", "dl-snap", "-n", NS, "-o", str(output), "--ttl", "300s",
         "--quiet"],
        capture_output=True, text=True, timeout=300, check=False,
        env={**_env(), "DVP_GATEWAY_URL": served.rest, "DVP_GATEWAY_TOKEN": token})
    assert result.returncode == 0, result.stderr
    assert "verified" in _one_line(result.stderr)
    assert _file_sha256(output) == disk_sha256(disk.seed, disk.size)
    _assert_sparse(output, disk)


@pytest.mark.timeout(600)
def test_killed_download_resumes_to_a_verified_file(served: Served, tmp_path: Path) -> None:
    disk = _make_disk(served, "dl-big", "2Gi")
    output = tmp_path / "big.img"
    paths = PartPaths(output)
    process = subprocess.Popen(_command(served, "disk", disk.name, output, "--quiet"), env=_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        # Killed late: the resumed run then moves little, and the last quarter (512 MiB)
        # takes far longer than one poll even on a fast machine.
        while not (paths.part.exists() and paths.part.stat().st_size >= disk.size * 3 // 4):
            if process.poll() is not None:
                stderr = process.stderr.read() if process.stderr else ""
                pytest.fail(f"the download ended before it could be killed: {stderr}")
            assert time.monotonic() < deadline, "the download made no progress"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.communicate(timeout=30)
    kept = paths.part.stat().st_size
    assert 0 < kept < disk.size and paths.meta.exists() and not output.exists()

    result = _download(served, "disk", disk.name, output)
    assert result.returncode == 0, result.stderr
    line = _one_line(result.stderr)
    match = re.search(r"resumed at .* \((\d+) bytes\)", line)
    assert match is not None and int(match.group(1)) >= kept - 64 * 1024, line
    assert "verified" in line
    assert _file_sha256(output) == disk_sha256(disk.seed, disk.size)
    _assert_sparse(output, disk)
    assert sorted(tmp_path.iterdir()) == [output]


@pytest.mark.timeout(300)
def test_partial_file_left_earlier_is_resumed_and_checked(served: Served, tmp_path: Path) -> None:
    """A part file of the first 200 MiB (as a killed run leaves it, ETag sidecar included)
    is continued; with a corrupted byte in it the checksum fails (exit 3) and the part is
    kept, until --no-resume downloads it again."""
    disk = _make_disk(served, "dl-resume", "512Mi")
    etag = _etag(served, disk)
    prefix = 200 * MiB
    good = tmp_path / "good.img"
    bad = tmp_path / "bad.img"
    for output, corrupt in ((good, False), (bad, True)):
        with PartPaths(output).part.open("wb") as part:
            for piece in iter_disk_content(disk.seed, disk.size, 0, prefix, chunk=4 * MiB):
                part.write(piece)
            if corrupt:
                part.seek(STRIPE + 10)       # inside the second stripe's data block
                part.write(b"\xff")
        save_meta(PartPaths(output).meta, PartMeta(etag, disk.size))

    resumed = _download(served, "disk", disk.name, good)
    assert resumed.returncode == 0, resumed.stderr
    line = _one_line(resumed.stderr)
    assert f"resumed at 200.0 MiB ({prefix} bytes)" in line and "verified" in line, line
    _assert_same_bytes(good, disk)

    mismatch = _download(served, "disk", disk.name, bad)
    assert mismatch.returncode == 3, mismatch.stderr
    line = _one_line(mismatch.stderr)
    assert line.startswith(f"error: disk {NS}/{disk.name}: checksum mismatch"), line
    assert PartPaths(bad).part.stat().st_size == disk.size and not bad.exists()

    again = _download(served, "disk", disk.name, bad, "--no-resume", "--quiet")
    assert again.returncode == 0, again.stderr
    _assert_same_bytes(bad, disk)


@pytest.mark.parametrize(("name", "token", "expected"), [
    # The demo's linux-vm runs with this disk attached: its export is refused.
    ("linux-vm-root", None, f"error: disk {NS}/linux-vm-root: "),
    ("no-such-disk", None, f"error: disk {NS}/no-such-disk: "),
    ("spare-disk", "not-a-token", f"error: disk {NS}/spare-disk: "),
])
def test_refused_export_is_exit_1_and_one_line(served: Served, tmp_path: Path, name: str, token: str | None,
                                               expected: str) -> None:
    output = tmp_path / "refused.img"
    command = _command(served, "disk", name, output)
    if token is not None:
        command[command.index("--token-file"):command.index("--token-file") + 2] = ["--token", token]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, env=_env())
    assert result.returncode == 1, result.stderr
    line = _one_line(result.stderr)
    assert line.startswith(expected), line
    status = {"linux-vm-root": "(412 FAILED_PRECONDITION)", "no-such-disk": "(404 NOT_FOUND)",
              "spare-disk": "(401 UNAUTHENTICATED)"}[name]
    assert line.endswith(status), line
    assert list(tmp_path.iterdir()) == [], "nothing is left behind"
