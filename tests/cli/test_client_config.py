"""The client config file (`var/client.yaml`, written by `dvp-gateway serve`, read by dvpctl
and service.client): what serve writes reads back the same, the lookup order holds, and
any file at all is either a config or one ConfigError line naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.client.config import (
    ENV_CONFIG,
    ClientConfig,
    ConfigError,
    connect_host,
    find_config,
    load_config,
    write_config,
)


def test_what_serve_writes_reads_back(tmp_path: Path) -> None:
    token_file = tmp_path / "dev-token"
    token_file.write_text("s3cr3t-token\n")
    written = ClientConfig(rest="http://127.0.0.1:8081", grpc="127.0.0.1:50052", token_file=token_file,
                           namespace="demo")
    path = write_config(tmp_path / "client.yaml", written)
    assert "s3cr3t" not in path.read_text(), "the file names the token's file, never the token"
    read = load_config(path)
    assert (read.rest, read.grpc, read.tls, read.namespace) == ("http://127.0.0.1:8081", "127.0.0.1:50052", False,
                                                                "demo")
    assert read.bearer_token() == "s3cr3t-token"
    assert "s3cr3t" not in repr(ClientConfig(token="s3cr3t"))


def test_relative_files_are_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "token").write_text("abc\n")
    path = tmp_path / "conf" / "client.yaml"
    path.write_text("tokenFile: token\n")
    assert load_config(path).bearer_token() == "abc"


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(ENV_CONFIG, raising=False)
    assert find_config() is None
    user = tmp_path / "home" / ".config" / "dvpctl" / "config.yaml"
    user.parent.mkdir(parents=True)
    user.write_text("namespace: mine\n")
    assert find_config() == user
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "client.yaml").write_text("namespace: demo\n")
    assert find_config() == Path("var/client.yaml")
    monkeypatch.setenv(ENV_CONFIG, str(user))
    assert find_config() == user
    assert find_config(Path("elsewhere.yaml")) == Path("elsewhere.yaml")


@pytest.mark.parametrize(("text", "expect"), [
    ("- a\n- b\n", "expected a mapping"),
    ("rest: [1]\n", "rest must be a one-line string"),
    ("tls: maybe\n", "tls must be true or false"),
    ("server: x\n", "unknown key 'server'"),
    ("rest: 'a\n  b\n", "not valid YAML at line"),
])
def test_bad_files_are_one_line_naming_the_file(tmp_path: Path, text: str, expect: str) -> None:
    path = tmp_path / "client.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert expect in message and str(path) in message and "\n" not in message


def test_missing_file_and_missing_token_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the client config"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="cannot read the token file"):
        ClientConfig(token_file=tmp_path / "absent").bearer_token()
    (tmp_path / "binary").write_bytes(b"\xff\xfe token")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        ClientConfig(token_file=tmp_path / "binary").bearer_token()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=300),
                 st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                              lambda inner: st.lists(inner, max_size=3)
                              | st.dictionaries(st.sampled_from(["rest", "grpc", "tls", "token", "tokenFile",
                                                                 "caFile", "namespace", "x"]) | st.text(max_size=5),
                                                inner, max_size=4),
                              max_leaves=8).map(lambda data: yaml.safe_dump(data).encode())))
def test_any_file_is_a_config_or_one_config_error(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "client.yaml"
    path.write_bytes(raw)
    try:
        config = load_config(path)
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
    else:
        assert isinstance(config.rest, str) and isinstance(config.tls, bool)


@pytest.mark.parametrize(("bound", "dial"), [("0.0.0.0", "127.0.0.1"), ("", "127.0.0.1"), ("::", "[::1]"),
                                             ("::1", "[::1]"), ("10.0.0.5", "10.0.0.5")])
def test_a_client_dials_a_wildcard_listener_on_loopback(bound: str, dial: str) -> None:
    assert connect_host(bound) == dial
