"""Run ``dvpctl`` as a real process (the installed console script) without blocking the
event loop the in-process gateway runs on."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DVPCTL = Path(sys.executable).parent / "dvpctl"


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def yaml(self) -> Any:
        return yaml.safe_load(self.out)

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


def base_env(home: Path, **extra: str) -> dict[str, str]:
    """No config or token from the machine running the tests: only what a test gives."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVPCTL_", "DVP_GATEWAY_"))}
    env.update(HOME=str(home), NO_COLOR="1", COLUMNS="200")
    env.update(extra)
    return env


class Cli:
    """``await cli("get", "vds")``: dvpctl with this environment, from this directory."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd, self.env = cwd, env

    async def __call__(self, *args: str, env: dict[str, str] | None = None, within: float = 60.0) -> Result:
        process = await asyncio.create_subprocess_exec(
            str(DVPCTL), *args, cwd=self.cwd, env={**self.env, **(env or {})},
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(process.communicate(), within)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise AssertionError(f"dvpctl {' '.join(args)} did not end within {within}s") from None
        assert process.returncode is not None
        return Result(process.returncode, out.decode(), err.decode())

    async def start(self, *args: str) -> asyncio.subprocess.Process:
        """A dvpctl left running, for ``interrupt``. Its Ctrl-C is the terminal's even when
        the suite itself was started in the background (``./dev test &``), where SIGINT is
        inherited as ignored and Python, rightly, keeps it ignored."""
        return await asyncio.create_subprocess_exec(
            str(DVPCTL), *args, cwd=self.cwd, env=self.env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, preexec_fn=_default_sigint)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def read_until(process: asyncio.subprocess.Process, needle: str, within: float = 30.0) -> list[str]:
    """stdout lines of a running process up to (and with) the first one holding ``needle``."""
    assert process.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(within):
        while True:
            raw = await process.stdout.readline()
            assert raw, f"the process ended (exit {process.returncode}) before printing {needle!r}: {lines}"
            lines.append(raw.decode().rstrip("\n"))
            if needle in lines[-1]:
                return lines


async def interrupt(process: asyncio.subprocess.Process) -> tuple[int, str]:
    """Ctrl-C: SIGINT, then the exit code and what stderr said."""
    process.send_signal(signal.SIGINT)
    assert process.stderr is not None
    _, err = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode is not None
    return process.returncode, err.decode()


def write_config(directory: Path, rest: str, token: str, namespace: str = "demo") -> Path:
    token_file = directory / "token"
    token_file.write_text(token + "\n")
    config = directory / "client.yaml"
    config.write_text(yaml.safe_dump({"rest": rest, "tokenFile": "token", "namespace": namespace}))
    return config


def table(text: str) -> list[dict[str, str]]:
    """Rows of a plain table, split on its header's column starts."""
    lines = [line for line in text.splitlines() if line.strip()]
    header = lines[0]
    starts = [i for i, c in enumerate(header) if c != " " and (i == 0 or header[i - 1] == " ")]
    names = header.split()
    rows = []
    for line in lines[1:]:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        rows.append(dict(zip(names, cells, strict=True)))
    return rows
