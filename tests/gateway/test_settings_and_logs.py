"""Settings precedence (defaults < DVP_GATEWAY_* env < flags), the migrate subcommand,
and logs: JSON with the request id, and no secret in any line."""

from __future__ import annotations

import argparse
import io
import json
import logging
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import aiohttp
import pytest

from service import log
from service.settings import Settings, UsageError, add_flags, from_args, from_env
from tests.support.gateway import GatewayServer


def test_env_overrides_defaults_and_flags_override_env() -> None:
    env = {"DVP_GATEWAY_GRPC_PORT": "6000", "DVP_GATEWAY_REST_PORT": "7000", "DVP_GATEWAY_IN_CLUSTER": "true",
           "DVP_GATEWAY_KUBECONFIG": "/etc/kube.yaml"}
    assert from_env(env).grpc_port == 6000
    parser = argparse.ArgumentParser()
    add_flags(parser)
    settings = from_args(parser.parse_args(["--grpc-port", "6001", "--no-in-cluster"]), env)
    assert (settings.grpc_port, settings.rest_port, settings.in_cluster) == (6001, 7000, False)
    assert settings.kubeconfig == Path("/etc/kube.yaml") and not settings.embedded
    assert Settings().embedded, "nothing configured means the embedded cluster"


def test_a_malformed_env_value_is_a_clear_startup_error() -> None:
    with pytest.raises(UsageError, match="DVP_GATEWAY_GRPC_PORT"):
        from_env({"DVP_GATEWAY_GRPC_PORT": "fifty"})
    with pytest.raises(UsageError, match="DVP_GATEWAY_IN_CLUSTER"):
        from_env({"DVP_GATEWAY_IN_CLUSTER": "perhaps"})


@pytest.mark.parametrize(("name", "raw"), [
    ("grpc_port", "65536"), ("rest_port", "-1"), ("shutdown_grace", "-0.5"), ("shutdown_grace", "inf"),
    ("reconcile_interval", "0"), ("embedded_step_delay", "nan"), ("export_max_concurrent", "0"),
    ("export_max_per_caller", "0"), ("export_chunk_bytes", str(8 << 20)), ("log_level", "LOUD"),
    ("log_format", "xml"), ("auth", "none"), ("lease_namespace", "Upper"),
    ("database_url", "mysql://u:hunter2@db/x"), ("database_url", "not a url"),
])
def test_flags_and_env_refuse_the_same_values_naming_themselves(name: str, raw: str) -> None:
    env_var = "DVP_GATEWAY_" + name.upper()
    with pytest.raises(UsageError, match=env_var) as caught:
        from_env({env_var: raw})
    assert caught.value.exit_code == 2 and "hunter2" not in str(caught.value)
    parser = _StrictParser()
    add_flags(parser)
    flag = "--" + name.replace("_", "-")
    with pytest.raises(_Refused, match=flag):
        parser.parse_args([flag, raw])


def test_choices_are_case_insensitive_and_zero_is_kept_where_it_means_something() -> None:
    parser = argparse.ArgumentParser()
    add_flags(parser)
    settings = from_args(parser.parse_args(["--log-level", "debug", "--log-format", "TEXT", "--shutdown-grace", "0",
                                            "--embedded-step-delay", "0", "--grpc-port", "0"]), {})
    assert (settings.log_level, settings.log_format, settings.shutdown_grace, settings.grpc_port) == ("DEBUG", "text",
                                                                                                    0.0, 0)
    assert from_env({"DVP_GATEWAY_LOG_LEVEL": "warning", "DVP_GATEWAY_AUTH": "Kubernetes"}).auth == "kubernetes"


def test_a_flag_overrides_a_bad_env_value_and_settings_that_go_together_are_checked() -> None:
    parser = argparse.ArgumentParser()
    add_flags(parser)
    assert from_args(parser.parse_args(["--grpc-port", "6000"]), {"DVP_GATEWAY_GRPC_PORT": "fifty"}).grpc_port == 6000
    for argv, message in [(["--tls-key", "k.pem"], "--tls-cert and --tls-key"),
                          (["--tls-client-ca", "ca.pem"], "--tls-client-ca"),
                          (["--grpc-port", "7000", "--rest-port", "7000"], "both 7000")]:
        with pytest.raises(UsageError, match=message):
            from_args(parser.parse_args(argv), {})
    # Different hosts may share a port number.
    assert from_args(parser.parse_args(["--grpc-port", "7000", "--rest-port", "7000", "--rest-host", "::1"]), {})


class _Refused(Exception):
    pass


class _StrictParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _Refused(message)


def test_migrate_subcommand_creates_the_schema(tmp_path: Path) -> None:
    db = tmp_path / "gateway.db"
    gateway = Path(sys.executable).parent / "dvp-gateway"
    for _ in range(2):  # idempotent
        done = subprocess.run([str(gateway), "migrate", "--database-url", f"sqlite:///{db}"],
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
    tables = {row[0] for row in sqlite3.connect(db).execute("select name from sqlite_master where type='table'")}
    assert {"operations", "operation_transitions", "audit_events"} <= tables


@pytest.mark.parametrize("line", [
    "Authorization: Bearer abc.DEF-123_xyz",
    '{"token": "s3cr3t-value"}',
    "password=hunter2 next",
    "postgresql://gateway:hunter2@db:5432/gw",
])
def test_redaction_removes_secrets(line: str) -> None:
    cleaned = log.redact(line)
    for secret in ("abc.DEF-123_xyz", "s3cr3t-value", "hunter2"):
        assert secret not in cleaned
    assert "[REDACTED]" in cleaned


def test_json_lines_carry_the_request_id() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(log._JsonFormatter())
    logger = logging.getLogger("dvp.test-json")
    logger.addHandler(handler)
    logger.propagate = False
    token = log.request_id_var.set("req-42")
    try:
        logger.warning("called with Bearer topsecret")
    finally:
        log.request_id_var.reset(token)
        logger.removeHandler(handler)
    entry = json.loads(stream.getvalue())
    assert entry["request_id"] == "req-42" and entry["level"] == "warning"
    assert "topsecret" not in entry["msg"]
    assert "trace_id" not in entry   # tracing off: no trace to point at


@pytest.mark.parametrize(("formatter", "expected"), [
    (log._JsonFormatter(), '"request_id": "req-7", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"'),
    (log._TextFormatter("%(message)s"), "[req-7 trace=4bf92f3577b34da6a3ce929d0e0e4736] answered"),
])
def test_a_traced_call_s_lines_carry_its_trace_id_in_both_formats(formatter: logging.Formatter, expected: str) -> None:
    record = logging.LogRecord("dvp.calls", logging.INFO, __file__, 1, "answered", None, None)
    tokens = log.request_id_var.set("req-7"), log.trace_id_var.set("4bf92f3577b34da6a3ce929d0e0e4736")
    try:
        line = formatter.format(record)
    finally:
        log.trace_id_var.reset(tokens[1])
        log.request_id_var.reset(tokens[0])
    assert expected in line, line
    assert "trace" not in formatter.format(record)


async def test_no_token_reaches_any_log_line_of_a_real_call(gateway_server: GatewayServer,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    headers = {**gateway_server.auth(), "X-Request-Id": "trace-me-1"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(f"{gateway_server.rest_url}/v1/namespaces/demo/disk-snapshots",
                             json={"name": "logged", "virtualDiskName": "linux-vm-root"}) as resp:
            assert resp.status == 202
        async with http.get(f"{gateway_server.rest_url}/v1/namespaces/demo/disk-snapshots/absent") as resp:
            assert resp.status == 404
    formatter = log._JsonFormatter()
    rendered = "\n".join(formatter.format(record) for record in caplog.records)
    assert caplog.records, "expected the gateway to log something at DEBUG"
    for secret in (*gateway_server.tokens.values(), gateway_server.cluster.admin_token):
        assert secret not in rendered
