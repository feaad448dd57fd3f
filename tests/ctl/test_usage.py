"""dvpctl as a real process without a gateway: usage errors, help, config and connection
failures are each one line with the documented exit code."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

from tests.ctl.support import Cli, base_env


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def offline(tmp_path: Path) -> Cli:
    return Cli(tmp_path, base_env(tmp_path, DVPCTL_SERVER=f"http://127.0.0.1:{closed_port()}",
                                  DVPCTL_TOKEN="some-token"))


async def test_usage_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    cli = offline(tmp_path)
    cases = []
    for args, words in ((["frobnicate"], "invalid choice: 'frobnicate'"),
                        ([], "the following arguments are required: VERB"),
                        (["get", "disks"], "invalid choice: 'disks'"),
                        (["create", "disk-snapshot", "s1"], "the following arguments are required: --disk"),
                        (["restore", "vm", "linux-vm", "--snapshot", "s", "--mode", "Sloppy"], "invalid choice"),
                        (["wait", "operation", "x", "--timeout", "soon"], "expected seconds"),
                        (["clone", "vm", "v", "--rename", "nothing"], "expected [KIND/]OLD=NEW"),
                        (["audit", "list", "--since", "yesterday"], "expected an RFC 3339 time"),
                        (["get", "operations", "--watch"], "--watch follows one operation"),
                        (["get", "vds", "--server", "ftp://x"], "--server: expected http(s)://HOST:PORT")):
        cases.append((args, words, asyncio.ensure_future(cli(*args))))
    for args, words, running in cases:
        result = await running
        assert result.code == 2, (args, result)
        assert result.out == "" and len(result.err_lines) == 1, (args, result)
        assert result.err.startswith("error: ") and words in result.err, (args, result)


async def test_help_describes_choices_and_defaults(tmp_path: Path) -> None:
    cli = offline(tmp_path)
    top = await cli("--help")
    assert top.code == 0 and "exit codes" in top.out
    for verb in ("get", "create", "delete", "restore", "clone", "export", "wait", "cancel", "timeline", "audit"):
        assert verb in top.out
    get = await cli("get", "vds", "--help")
    assert get.code == 0
    assert "{table,wide,json,yaml,name}" in get.out and "(default: table)" in get.out
    assert "--token-file" in get.out and "DVPCTL_TOKEN" in get.out
    restore = await cli("restore", "vm", "--help")
    assert "{DryRun,Strict,BestEffort}" in restore.out and "(default: Strict)" in restore.out


async def test_connection_and_config_failures_are_one_line_and_exit_1(tmp_path: Path) -> None:
    cli = offline(tmp_path)
    running = []
    for args in (["get", "vds", "-n", "demo"], ["wait", "op", "5b0f6d4e-1111-4222-8333-944455556666"],
                 ["audit", "verify"], ["export", "disk", "spare-disk", "-n", "demo", "-o", "out.img"],
                 ["get", "vms", "-n", "demo", "--watch"]):
        running.append((args, asyncio.ensure_future(cli(*args))))
    for args, pending in running:
        result = await pending
        assert result.code == 1, (args, result)
        assert len(result.err_lines) == 1 and "cannot connect to http://127.0.0.1:" in result.err, (args, result)
        # Every command, the export's own download client too, in the OS's words.
        assert result.err_lines[0].endswith(": Connection refused"), (args, result)
        assert "Traceback" not in result.err
    assert not [n for n in os.listdir(tmp_path) if n.startswith("out.img")], "a failed export leaves nothing"

    broken = tmp_path / "broken.yaml"
    broken.write_text("rest: http://127.0.0.1:1\nsurprise: 1\n")
    bad = await cli("get", "vds", env={"DVPCTL_CONFIG": str(broken)})
    assert bad.code == 1 and bad.err_lines == [
        f"error: client config {broken}: unknown key 'surprise' (known: caFile, grpc, namespace, rest, tls, "
        "token, tokenFile)"], bad
    missing = await cli("get", "vds", "--config", str(tmp_path / "absent.yaml"))
    assert missing.code == 1 and "cannot read the client config" in missing.err and len(missing.err_lines) == 1
