"""Token files, policy files and their rules (pure, on real files)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml

from service.core.auth import (
    AuthConfigError,
    PolicyAuthorizer,
    PolicyRule,
    StaticTokenAuthenticator,
    bearer_token,
    create_dev_token_file,
    sha256_hex,
)
from service.core.domain import Caller

ALICE_TOKEN = "alice-token-0123456789"


def write(path: Path, doc: object) -> Path:
    path.write_text(yaml.safe_dump(doc))
    return path


async def test_hashed_and_plain_tokens(tmp_path: Path) -> None:
    path = write(tmp_path / "tokens.yaml", {"tokens": [
        {"subject": "alice", "groups": ["snapshotters"], "token_sha256": sha256_hex(ALICE_TOKEN)},
        {"subject": "bob", "token": "bob-plain-token-123456"},
    ]})
    auth = StaticTokenAuthenticator.from_file(path)
    assert await auth.authenticate(ALICE_TOKEN) == Caller("alice", ("snapshotters",))
    assert await auth.authenticate("bob-plain-token-123456") == Caller("bob", ())
    assert await auth.authenticate("wrong") is None
    assert await auth.authenticate("") is None


async def test_dev_token_file_stores_only_the_hash(tmp_path: Path) -> None:
    path = tmp_path / "dev" / "tokens.yaml"
    token = create_dev_token_file(path)
    text = path.read_text()
    assert token not in text and sha256_hex(token) in text
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    caller = await StaticTokenAuthenticator.from_file(path).authenticate(token)
    assert caller == Caller("dev", ("admins", "auditors"))


@pytest.mark.parametrize("doc", [
    None, {"tokens": "x"}, {"tokens": [{"subject": "", "token": "x" * 20}]},
    {"tokens": [{"subject": "a"}]},
    {"tokens": [{"subject": "a", "token": "short"}]},
    {"tokens": [{"subject": "a", "token_sha256": "zz" * 32}]},
    {"tokens": [{"subject": "a", "token_sha256": "ab"}]},
    {"tokens": [{"subject": "a", "token": "x" * 20, "token_sha256": "ab" * 32}]},
    {"tokens": [{"subject": "a", "token": "x" * 20, "groups": "admins"}]},
])
def test_bad_token_files_are_refused(tmp_path: Path, doc: object) -> None:
    with pytest.raises(AuthConfigError):
        StaticTokenAuthenticator.from_file(write(tmp_path / "t.yaml", doc))


def test_missing_or_broken_files(tmp_path: Path) -> None:
    with pytest.raises(AuthConfigError):
        StaticTokenAuthenticator.from_file(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("tokens: [\n")
    with pytest.raises(AuthConfigError):
        PolicyAuthorizer.from_file(broken)


POLICY = {"rules": [
    {"subjects": ["group:admins"], "namespaces": ["*"], "verbs": ["*"],
     "resources": ["disk-snapshots", "operations"]},
    {"subjects": ["alice"], "namespaces": ["demo"], "verbs": ["get", "list", "create"],
     "resources": ["disk-snapshots"]},
    {"subjects": ["group:auditors"], "namespaces": ["*"], "verbs": ["list", "verify", "export"],
     "resources": ["audit"]},
]}


async def test_policy_rules(tmp_path: Path) -> None:
    authz = PolicyAuthorizer.from_file(write(tmp_path / "policy.yaml", POLICY))
    alice = Caller("alice")
    admin = Caller("root", ("admins",))
    auditor = Caller("carol", ("auditors",))
    assert await authz.allowed(alice, verb="create", resource="disk-snapshots", namespace="demo")
    assert not await authz.allowed(alice, verb="create", resource="disk-snapshots", namespace="prod")
    assert not await authz.allowed(alice, verb="delete", resource="disk-snapshots", namespace="demo")
    assert not await authz.allowed(alice, verb="list", resource="audit", namespace="")
    # Admins create snapshots anywhere but do not read the audit log unless granted.
    assert await authz.allowed(admin, verb="delete", resource="disk-snapshots", namespace="prod")
    assert not await authz.allowed(admin, verb="list", resource="audit", namespace="")
    # Auditors read the audit log and nothing else.
    assert await authz.allowed(auditor, verb="verify", resource="audit", namespace="")
    assert not await authz.allowed(auditor, verb="create", resource="disk-snapshots", namespace="demo")


async def test_cluster_wide_questions_need_a_wildcard_namespace() -> None:
    demo_only = PolicyAuthorizer([PolicyRule(frozenset({"x"}), frozenset({"demo"}), frozenset({"*"}),
                                             frozenset({"*"}))])
    assert await demo_only.allowed(Caller("x"), verb="list", resource="operations", namespace="demo")
    assert not await demo_only.allowed(Caller("x"), verb="list", resource="operations", namespace="")
    nothing = PolicyAuthorizer([])
    assert not await nothing.allowed(Caller("x", ("admins",)), verb="get", resource="operations", namespace="demo")
    scoped = PolicyAuthorizer.allow_all_for_groups("admins")
    assert await scoped.allowed(Caller("x", ("admins",)), verb="list", resource="operations", namespace="")
    assert not await scoped.allowed(Caller("x", ("users",)), verb="list", resource="operations", namespace="")


@pytest.mark.parametrize("doc", [{}, {"rules": [{"subjects": ["a"]}]},
                                 {"rules": [{"subjects": [], "namespaces": ["*"], "verbs": ["*"],
                                             "resources": ["*"]}]},
                                 {"rules": [{"subjects": ["a"], "namespaces": [1], "verbs": ["*"],
                                             "resources": ["*"]}]}])
def test_bad_policies_are_refused(tmp_path: Path, doc: object) -> None:
    with pytest.raises(AuthConfigError):
        PolicyAuthorizer.from_file(write(tmp_path / "p.yaml", doc))


@pytest.mark.parametrize(("header", "token"), [
    (None, ""), ("", ""), ("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("Basic abc", ""),
    ("Bearer", ""), ("Bearer a b", ""), ("Bearer " + "x" * 9000, ""),
])
def test_bearer_header(header: str | None, token: str) -> None:
    assert bearer_token(header) == token
