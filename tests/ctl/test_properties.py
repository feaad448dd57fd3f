"""Whatever the command line, dvpctl answers with an exit code (0, 1 or 2) and never a
traceback. In-process (``main(argv)``) for speed; the server is a closed port."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.ctl.main import main
from tests.ctl.test_usage import closed_port

WORDS = ["get", "create", "delete", "restore", "clone", "export", "wait", "cancel", "timeline", "audit",
         "disk-snapshots", "vds", "vm-snapshot", "vms", "operations", "op", "disk", "vm", "vm-snapshot",
         "disk-snapshot", "list", "verify", "s1", "linux-vm", "5b0f6d4e-1111-4222-8333-944455556666",
         "-o", "json", "yaml", "wide", "id", "name", "table", "csv", "-n", "demo", "-w", "--wait", "--timeout", "1",
         "0", "-1", "--disk", "--vm", "--snapshot", "--mode", "DryRun", "--dry-run", "--rename", "a=b",
         "VirtualDisk/a=b", "--name-prefix", "p-", "--limit", "--continue", "--since", "10m", "--force",
         "--format", "--progress", "--label", "k=v", "--server", "http://x", "--token", "--config", "--help",
         "-A", "--type", "RESTORE_VM", "--state", "FAILED", "--required-consistency", "--keep-ip-address",
         "Never", "--all", "--ttl", "5s", "--ca-file", "--token-file", ""]
PORT = closed_port()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where random words may become files; no config file or token to find there."""
    return tmp_path_factory.mktemp("dvpctl-properties")


# No "/" and no NUL: a random word may become a file name in the working directory.
LOOSE = st.text(alphabet=st.characters(blacklist_characters="/\x00", blacklist_categories=["Cs"]), max_size=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(argv=st.lists(st.one_of(st.sampled_from(WORDS), LOOSE), max_size=8))
def test_any_argv_ends_with_a_code_and_no_traceback(argv: list[str], workdir: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    env = {"DVPCTL_SERVER": f"http://127.0.0.1:{PORT}", "DVPCTL_TOKEN": "token", "HOME": str(workdir)}
    with mock.patch.dict(os.environ, env), contextlib.chdir(workdir), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err):
        code = main(argv)
    assert code in (0, 1, 2), (argv, code, err.getvalue())
    assert "Traceback" not in err.getvalue() and "Traceback" not in out.getvalue(), argv
    if code != 0:
        assert err.getvalue().startswith("error: "), (argv, err.getvalue())

