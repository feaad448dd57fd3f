"""The README's walkthrough, run as written, block by block, as a newcomer would paste it.

The gateway is started the way `./dev serve` starts it, in a scratch directory that holds
the repository's `.venv` and `scripts` (so `var/` is the scratch one), with free ports
instead of 8080/50051/9464: the only liberty taken is that the README's default addresses
are replaced by the ones this run bound. Every ```bash block of the walkthrough then runs
in bash with `set -euo pipefail` (the variables it sets carried to the next block), and
every ```python block with the venv's Python; each must exit 0 and print what the README
says it prints.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.banner import read_banner, stop_gracefully

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
VENV_BIN = Path(sys.executable).parent
WALKTHROUGH = "## Walkthrough"
BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```$", re.M | re.S)
ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=", re.M)
DEFAULT_ADDRESSES = {"rest": "127.0.0.1:8080", "grpc": "127.0.0.1:50051", "metrics": "127.0.0.1:9464"}
BANNER = {
    "grpc": re.compile(r"^gRPC\s+listening on (\S+)"),
    "rest": re.compile(r"^REST\s+listening on http://(\S+)/v1"),
    "metrics": re.compile(r"^metrics at http://(\S+)/metrics"),
    "client": re.compile(r"^client config (\S+)"),
}


@dataclass(frozen=True)
class Block:
    number: int
    language: str
    code: str

    @property
    def title(self) -> str:
        first = next((line for line in self.code.splitlines() if line.strip()), "")
        return f"block {self.number} ({self.language}): {first[:70]}"


def walkthrough_blocks(text: str) -> list[Block]:
    start = text.index(WALKTHROUGH)
    end = text.find("\n## ", start + len(WALKTHROUGH))
    section = text[start:end if end >= 0 else len(text)]
    return [Block(number, match.group(1), match.group(2))
            for number, match in enumerate(BLOCK.finditer(section), start=1)]


@dataclass
class Scratch:
    directory: Path
    addresses: dict[str, str]
    env: dict[str, str]

    def localize(self, code: str) -> str:
        for key, default in DEFAULT_ADDRESSES.items():
            code = code.replace(default, self.addresses[key])
        return code


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Scratch]:
    (tmp_path / ".venv").symlink_to(REPO / ".venv")
    (tmp_path / "scripts").symlink_to(REPO / "scripts")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVP_GATEWAY_", "DVPCTL_"))}
    env["HOME"] = str(tmp_path / "home")   # no ~/.config/dvpctl of the machine's user
    # `./dev serve` is `.venv/bin/dvp-gateway serve` once the venv exists; a short step
    # delay keeps the live status lines honest without making the run slow.
    process = subprocess.Popen(
        [".venv/bin/dvp-gateway", "serve", "--grpc-port", "0", "--rest-port", "0", "--metrics-port", "0",
         "--embedded-step-delay", "0.1", "--log-format", "text"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        banner = read_banner(process, BANNER, time.monotonic() + 90)
        assert banner["client"] == "var/client.yaml", "dvpctl finds ./var/client.yaml by itself"
        yield Scratch(tmp_path, banner, env)
    finally:
        assert stop_gracefully(process, 30), "the gateway did not stop on SIGTERM within 30 s"


def _run_bash(scratch: Scratch, block: Block, state: Path) -> subprocess.CompletedProcess[str]:
    names = sorted(set(ASSIGNMENT.findall(block.code)))
    keep = "".join(f'printf "%s=%q\\n" {name} "${name}" >>{shlex.quote(str(state))}\n' for name in names)
    script = (f"set -euo pipefail\nsource {shlex.quote(str(state))}\n"
              f"{scratch.localize(block.code)}\n{keep}")
    return subprocess.run(["bash", "-c", script], cwd=scratch.directory, env=scratch.env,
                          capture_output=True, text=True, timeout=180, check=False)


def _run_python(scratch: Scratch, block: Block) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_BIN / "python"), "-c", scratch.localize(block.code)], cwd=scratch.directory,
                          env=scratch.env, capture_output=True, text=True, timeout=180, check=False)


# What each block shows a reader, by a phrase of its first line: proof that it did the thing,
# not only that it exited 0.
EXPECTED = {
    "dvpctl create disk-snapshot linux-vm-root-snapshot": ["linux-vm-root-snapshot", "Ready"],
    "LOCATION=$(curl": ['"type": "CREATE_DISK_SNAPSHOT"', "event: operation", '"state":"SUCCEEDED"'],
    "grpc-example.py": ["SUCCEEDED phase=Ready"],
    "dvpctl create vm-snapshot": ["CREATE_VM_SNAPSHOT", "SUCCEEDED"],
    "dvpctl clone vm stopped-vm": ["copy-stopped-vm"],
    "kubectl --kubeconfig": ["NAME", "CONSISTENT", "linux-vm-root-snapshot"],
    "dvpctl get operations": ["CREATE_DISK_SNAPSHOT", "SUCCEEDED"],
    "dvpctl audit": ["CreateDiskSnapshot", "events verified"],
    "GatewayClient": ["from-python SUCCEEDED"],
    "dvpctl restore vm": ["is valid for restore"],
    "dvpctl export disk spare-disk": ["sha256"],
    "/metrics": ["dvp_gateway_requests_total"],
    "/console/": ["frame-ancestors 'none'"],
}


def test_the_readme_walkthrough_runs_as_written(scratch: Scratch) -> None:
    blocks = walkthrough_blocks(README.read_text())
    assert len(blocks) >= 8, "the walkthrough lost its blocks"
    assert not any("<id>" in block.code or "<" + "name>" in block.code for block in blocks), \
        "a placeholder to fill in by hand"
    state = scratch.directory / "walkthrough-state.sh"
    state.write_text("")
    matched: set[str] = set()
    for block in blocks:
        result = _run_bash(scratch, block, state) if block.language == "bash" else _run_python(scratch, block)
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"{block.title} exited {result.returncode}:\n{output[-3000:]}"
        assert "Traceback" not in output, f"{block.title}:\n{output[-3000:]}"
        for phrase, shown in EXPECTED.items():
            if phrase in block.code.splitlines()[0] or phrase in block.code:
                matched.add(phrase)
                missing = [text for text in shown if text not in output]
                assert not missing, f"{block.title} did not show {missing}:\n{output[-3000:]}"
    assert matched == set(EXPECTED), f"README blocks no longer shown: {sorted(set(EXPECTED) - matched)}"
