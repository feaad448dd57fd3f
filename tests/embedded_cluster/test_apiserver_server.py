"""EmbeddedCluster itself (fixtures, TLS, kubeconfig, demo seed) and the serve CLI."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kubernetes_asyncio.client import CoreV1Api, CustomObjectsApi

from service.embedded_cluster.cli import main
from service.embedded_cluster.server import EmbeddedCluster, EmbeddedClusterConfig
from tests.support.cluster import KUBECTL, api_client


async def test_seeded_cluster_over_http(embedded_cluster: EmbeddedCluster) -> None:
    assert embedded_cluster.url.startswith("http://127.0.0.1:") and embedded_cluster.ca_pem is None
    async with api_client(embedded_cluster) as client:
        disks = await CustomObjectsApi(client).list_namespaced_custom_object(
            "virtualization.deckhouse.io", "v1alpha2", "demo", "virtualdisks")
        assert "linux-vm-root" in {item["metadata"]["name"] for item in disks["items"]}
        vm = await CustomObjectsApi(client).get_namespaced_custom_object(
            "virtualization.deckhouse.io", "v1alpha2", "demo", "virtualmachines", "linux-vm")
        assert vm["metadata"]["uid"]


async def test_tls_cluster_verifies_with_its_ca(embedded_cluster_tls: EmbeddedCluster) -> None:
    assert embedded_cluster_tls.url.startswith("https://") and embedded_cluster_tls.ca_pem
    async with api_client(embedded_cluster_tls) as client:
        namespaces = await CoreV1Api(client).list_namespace()
    assert "demo" in {item.metadata.name for item in namespaces.items}


async def test_write_kubeconfig_is_private(embedded_cluster: EmbeddedCluster, tmp_path: Path) -> None:
    path = embedded_cluster.write_kubeconfig(tmp_path / "kube" / "config", token="other-token")
    assert path.stat().st_mode & 0o077 == 0
    config = yaml.safe_load(path.read_text())
    assert config["current-context"] == "embedded"
    assert config["users"][0]["user"]["token"] == "other-token"
    assert config["clusters"][0]["cluster"]["server"] == embedded_cluster.url


async def test_start_failure_leaves_nothing_behind(embedded_cluster: EmbeddedCluster) -> None:
    port = int(embedded_cluster.url.rsplit(":", 1)[1])
    clash = EmbeddedCluster(EmbeddedClusterConfig(port=port, seed_demo=False))
    try:
        await clash.start()
    except OSError:
        pass
    else:
        await clash.stop()
        raise AssertionError("binding a port in use must fail")


def test_cli_rejects_bad_arguments() -> None:
    try:
        main(["serve", "--port", "not-a-number"])
    except SystemExit as exit_:
        assert exit_.code == 2
    else:
        raise AssertionError("argparse must reject a non-numeric port")


async def test_serve_cli_with_kubectl(tmp_path: Path) -> None:
    # No --tls: serving HTTPS is the default, so kubectl (which sends no token over HTTP) works.
    kubeconfig, token_file = tmp_path / "kubeconfig", tmp_path / "admin-token"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.embedded_cluster", "serve", "--no-seed", "--step-delay", "0",
        "--kubeconfig-out", str(kubeconfig), "--admin-token-file", str(token_file),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=Path(__file__).parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    try:
        assert process.stdout is not None and process.stderr is not None
        lines: list[str] = []
        async with asyncio.timeout(30):
            while not any(line.startswith("kubeconfig written") for line in lines):
                line = (await process.stdout.readline()).decode()
                assert line, f"serve exited early: {(await process.stderr.read()).decode()}"
                lines.append(line)
        assert lines[0].startswith("embedded cluster serving at https://127.0.0.1:")
        assert len(token_file.read_text().strip()) >= 32 and token_file.stat().st_mode & 0o077 == 0
        result = await asyncio.to_thread(subprocess.run, [KUBECTL, "--kubeconfig", str(kubeconfig), "get", "ns"],
                                         capture_output=True, text=True, timeout=30, check=False)
        assert result.returncode == 0 and "default" in result.stdout, result.stderr
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            rest = (await process.stdout.read()).decode()
            assert await process.wait() == 0
        assert "embedded cluster stopped" in rest
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_bad_policy_file_fails_start(tmp_path: Path) -> None:
    cases = {"yaml": "users: [", "token": "users: [{name: a, token: short}]",
             "rules": "rules: [{subjects: a, namespaces: [x], verbs: [get], resources: ['*']}]"}
    for label, text in cases.items():
        policy = tmp_path / f"{label}.yaml"
        policy.write_text(text)
        cluster = EmbeddedCluster(EmbeddedClusterConfig(policy_path=policy, seed_demo=False))
        try:
            await cluster.start()
        except ValueError as error:
            assert str(error).startswith("policy:"), error
        else:
            await cluster.stop()
            raise AssertionError(f"{label}: a bad policy must fail start")


def test_serve_cli_reports_a_bad_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("users: [")
    assert main(["serve", "--policy", str(policy), "--no-seed", "--kubeconfig-out", str(tmp_path / "kc")]) == 2
    assert "policy:" in capsys.readouterr().err
    assert not (tmp_path / "kc").exists()
