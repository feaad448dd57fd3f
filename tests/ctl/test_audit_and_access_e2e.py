"""dvpctl (a real process) against a real gateway: the audit log, who may do what, where
the server and the token come from, and how API errors read."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import yaml

from tests.ctl.support import Cli, base_env, table
from tests.ctl.test_snapshots_e2e import cli_for
from tests.support.gateway import GatewayServer

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


async def test_audit_list_export_verify(gateway_server: GatewayServer, tmp_path: Path) -> None:
    cli = cli_for(gateway_server, tmp_path)
    assert (await cli("create", "vds", "audited", "--disk", "spare-disk", "--wait")).code == 0
    assert (await cli("create", "vds", "BAD", "--disk", "spare-disk")).code == 1

    listed = await cli("audit", "list")
    assert listed.code == 0, listed
    assert listed.out.splitlines()[0].split() == ["TIME", "ACTOR", "ACTION", "NAMESPACE", "RESOURCE", "OUTCOME"]
    seen = {(r["ACTOR"], r["ACTION"], r["NAMESPACE"], r["RESOURCE"], r["OUTCOME"]) for r in table(listed.out)}
    assert ("dev", "CreateDiskSnapshot", "demo", "disk-snapshots/audited", "SUCCESS") in seen, listed
    assert ("dev", "CreateDiskSnapshot", "demo", "disk-snapshots/BAD", "ERROR") in seen, listed

    errors = await cli("audit", "list", "--action", "CreateDiskSnapshot", "--outcome", "ERROR", "--since", "1h",
                       "-n", "demo", "-o", "json")
    assert errors.code == 0, errors
    items = errors.json()["items"]
    assert items and all(e["outcome"] == "ERROR" and e["action"] == "CreateDiskSnapshot" for e in items)

    first = await cli("audit", "list", "--limit", "1", "-o", "yaml")
    page = yaml.safe_load(first.out)
    assert len(page["items"]) == 1 and page["nextPageToken"], first
    assert f"--continue {page['nextPageToken']}" in first.err
    second = await cli("audit", "list", "--limit", "1", "--continue", page["nextPageToken"], "-o", "json")
    assert second.json()["items"][0]["id"] > page["items"][0]["id"]

    exported = tmp_path / "audit.csv"
    done = await cli("audit", "export", "--format", "csv", "-o", str(exported), "--actor", "dev")
    assert done.code == 0, done
    records = list(csv.DictReader(io.StringIO(exported.read_text())))
    assert records and all(r["actor"] == "dev" for r in records)
    assert {"id", "time", "action", "outcome", "hash"} <= set(records[0])
    lines = await cli("audit", "export", "--action", "CreateDiskSnapshot")
    events = [json.loads(line) for line in lines.out.splitlines()]
    assert events and all(e["action"] == "CreateDiskSnapshot" for e in events)

    # The auditor verifies, with the streamed progress when asked for.
    auditor = cli_for(gateway_server, tmp_path / "auditor", user="auditor")
    verified = await auditor("audit", "verify", "--progress", "-o", "json")
    assert verified.code == 0, verified
    assert verified.json()["ok"] is True and verified.json()["checked"] >= len(events)
    assert any(line.startswith("verified ") and "/" in line for line in verified.err_lines), verified
    plain = await auditor("audit", "verify")
    assert plain.code == 0 and table(plain.out)[0]["OK"] == "true", plain


async def test_errors_permissions_and_credentials(gateway_server: GatewayServer, tmp_path: Path) -> None:
    server = gateway_server
    cli = cli_for(server, tmp_path)

    invalid = await cli("create", "disk-snapshot", "Not_A_Name", "--disk", "")
    assert invalid.code == 1 and invalid.out == "", invalid
    assert invalid.err_lines[0].startswith("error: the request is invalid") and "400 INVALID_ARGUMENT" in invalid.err
    assert sorted(line.split(":")[0] for line in invalid.err_lines[1:]) == ["  name", "  virtualDiskName"], invalid

    stranger = cli_for(server, tmp_path / "stranger", user="stranger")
    denied = await stranger("get", "vds")
    assert denied.code == 1 and len(denied.err_lines) == 1, denied
    assert "403 PERMISSION_DENIED" in denied.err
    operator = cli_for(server, tmp_path / "operator", user="operator")
    assert (await operator("audit", "list")).code == 1
    assert (await operator("get", "vds")).code == 0

    # The token from a flag, a file, the environment, in that order; never printed.
    bare = Cli(tmp_path, base_env(tmp_path, DVPCTL_SERVER=server.rest_url))
    token_file = tmp_path / "dev-token"
    token_file.write_text(server.token)
    for args, env in ((["--token", server.token], {}), (["--token-file", str(token_file)], {}),
                      ([], {"DVPCTL_TOKEN": server.token}),
                      (["--token", server.token], {"DVPCTL_TOKEN": "wrong"})):
        ok = await bare("get", "vds", "-n", "demo", *args, env=env)
        assert ok.code == 0, (args, env, ok)
    wrong = await bare("get", "vds", "-n", "demo", "--token", "wrong-token")
    assert wrong.code == 1 and "401 UNAUTHENTICATED" in wrong.err and "wrong-token" not in wrong.err, wrong
    no_namespace = await bare("get", "vds", "--token", server.token)
    assert no_namespace.code == 2 and no_namespace.err_lines == ["error: no namespace: pass -n NAMESPACE"], \
        no_namespace
    no_token = await bare("get", "vds", "-n", "demo")
    assert no_token.code == 1 and no_token.err.startswith("error: no bearer token"), no_token

    # ./var/client.yaml (what `dvp-gateway serve` writes) is found from the working directory.
    workdir = tmp_path / "work"
    (workdir / "var").mkdir(parents=True)
    (workdir / "var" / "token").write_text(server.token)
    (workdir / "var" / "client.yaml").write_text(yaml.safe_dump(
        {"rest": server.rest_url, "tokenFile": "token", "namespace": "demo"}))
    found = await Cli(workdir, base_env(tmp_path))("get", "operations", "-o", "json")
    assert found.code == 0 and "items" in found.json(), found
    # --server beats the config; an unreachable server is one line and exit 1.
    unreachable = await Cli(workdir, base_env(tmp_path))("get", "vds", "--server", "http://127.0.0.1:9")
    assert unreachable.code == 1 and unreachable.err_lines == [
        "error: cannot connect to http://127.0.0.1:9: Connection refused"], unreachable
