"""docs/client.md's first Python example, run as written (a script of its own) against the
real gateway: the config file it reads is the one `dvp-gateway serve` writes."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from service.api.grpc_gen.dvp.snapshots.v1 import operation_pb2
from service.client.config import ENV_CONFIG, ClientConfig, write_config
from service.client.gateway import GatewayClient
from tests.support.gateway import GatewayServer

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "client.md"
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def first_python_example() -> str:
    found = re.search(r"^```python\n(.*?)^```", GUIDE.read_text(), re.DOTALL | re.MULTILINE)
    assert found, f"{GUIDE} has no python example"
    return found.group(1)


async def test_the_guides_first_example_runs(gateway_server: GatewayServer, tmp_path: Path) -> None:
    token_file = tmp_path / "dev-token"
    token_file.write_text(gateway_server.token)
    config = write_config(tmp_path / "client.yaml", ClientConfig(grpc=gateway_server.grpc_target,
                                                                 token_file=token_file, namespace="demo"))
    env = {**os.environ, ENV_CONFIG: str(config), "PYTHONPATH": str(REPO)}
    script = await asyncio.create_subprocess_exec(sys.executable, "-c", first_python_example(), cwd=tmp_path, env=env,
                                                  stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(60):
        out, err = await script.communicate()
    assert script.returncode == 0, err.decode()
    printed = re.fullmatch(r"(linux-vm-root-\S+): Ready, operation (\S+) SUCCEEDED\n", out.decode())
    assert printed, out.decode()

    async with GatewayClient.connect(gateway_server.grpc_target, token=gateway_server.token) as client:
        operation = await client.get_operation(printed.group(2))
    assert operation.state == operation_pb2.Operation.SUCCEEDED and operation.resource.name == printed.group(1)
