"""A bounded schemathesis run against the real served API: no 5xx, and no response the
document does not describe (status, content type, headers, body)."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from tests.support.gateway import GatewayServer

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
CONFORMANCE = ",".join(("status_code_conformance", "content_type_conformance", "response_headers_conformance",
                        "response_schema_conformance"))
# Watching a namespace is an endless stream by design; a fuzzer's request would only time out.
ENDLESS = ["WatchDiskSnapshots", "WatchVirtualMachineSnapshots"]


# CPython 3.11.7 (this machine's) can raise this inside Hypothesis while it parses source
# to describe a strategy (a fixed interpreter bug, not a finding about our API). It showed
# up with two schemathesis workers parsing at once (1 run in 3 under load) and not with
# one, so the run uses one worker; should it still happen, that run says nothing about
# the server and is run once more.
INTERPRETER_FAULT = "AST constructor recursion depth mismatch"


async def run_schemathesis(server: GatewayServer, workdir: Path, checks: str, max_examples: int,
                           phases: str, selection: list[str]) -> None:
    url = server.rest_url
    args = [f"{url}/openapi.yaml", "--url", url, "--checks", checks,
            "--header", f"Authorization: Bearer {server.token}",
            "--max-examples", str(max_examples), "--generation-deterministic", "--phases", phases,
            "--workers", "1", "--request-timeout", "10", "--no-shrink", "--no-color", "--max-failures", "20",
            *selection]
    for attempt in (1, 2):
        returncode, report = await _run(args, workdir)
        if returncode == 0 or INTERPRETER_FAULT not in report or attempt == 2:
            break
    print(report)  # shown by pytest when the run fails
    assert returncode == 0, report[-4000:]
    # Every generated case passed every check (warnings about test data are advisory).
    assert re.search(r"(\d+) generated, \1 passed", report), report[-2000:]


async def _run(args: list[str], workdir: Path) -> tuple[int | None, str]:
    process = await asyncio.create_subprocess_exec(str(SCHEMATHESIS), "run", *args, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.STDOUT, cwd=workdir)
    try:
        async with asyncio.timeout(90):
            output, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return process.returncode, output.decode(errors="replace")


@pytest.mark.timeout(360)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_schemathesis_finds_no_server_error_and_no_undocumented_response(
        gateway_server: GatewayServer, tmp_path: Path) -> None:
    excluded = [arg for operation_id in ENDLESS for arg in ("--exclude-operation-id", operation_id)]
    await run_schemathesis(gateway_server, tmp_path, "not_a_server_error," + CONFORMANCE, 4,
                           "examples,coverage,fuzzing", excluded)
