"""A state directory that cannot be used as it is stops the start with one line naming the
file and what is wrong; nothing is discarded to get past it. (The one exception, by design:
a last record cut short by a kill, which was never applied nor acknowledged.)"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from service.embedded_cluster.apiserver import journal as journal_module
from service.embedded_cluster.apiserver.builtin_types import CONFIGMAPS
from service.embedded_cluster.apiserver.recovery import SNAPSHOT, load_state, segment_name
from service.embedded_cluster.apiserver.statefiles import encode_record
from service.embedded_cluster.cli import main
from service.embedded_cluster.contracts import StatusError
from service.embedded_cluster.server import EmbeddedCluster, EmbeddedClusterConfig, StateError
from service.embedded_cluster.state import StateDir
from service.launcher import start_embedded_cluster
from service.settings import Settings


def config(state: Path) -> EmbeddedClusterConfig:
    return EmbeddedClusterConfig(state_dir=state, seed_demo=False, run_controllers=False, tls=True)


async def saved_state(tmp_path: Path) -> Path:
    """A state directory a cluster left after a clean stop: one snapshot, the CA, the token."""
    state = tmp_path / "state"
    async with EmbeddedCluster(config(state)) as cluster:
        await cluster.store.create(CONFIGMAPS.key, {"metadata": {"name": "cm", "namespace": "default"}})
    return state


async def start_error(state: Path, *, released: bool = True) -> str:
    cluster = EmbeddedCluster(config(state))
    with pytest.raises(StateError) as error:
        await cluster.start()
    message = str(error.value)
    assert "\n" not in message and str(state) in message, message
    if released:
        probe = StateDir(state)   # the failed start let go of the directory
        probe.open()
        probe.close()
    return message


def record(rv: int, name: str, event_type: str = "ADDED") -> bytes:
    return encode_record({"rv": rv, "type": event_type, "resource": CONFIGMAPS.key,
                          "object": {"metadata": {"name": name, "namespace": "default", "resourceVersion": str(rv)}}})


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def write_segments(objects: Path, *contents: tuple[int, bytes]) -> None:
    for first_rv, data in contents:
        (objects / segment_name(first_rv)).write_bytes(data)


CASES: dict[str, tuple[Callable[[Path], object], str]] = {
    "snapshot bit flip": (lambda s: flip_a_byte(s / "objects" / SNAPSHOT), f"{SNAPSHOT}: damaged snapshot"),
    "snapshot truncated": (lambda s: (s / "objects" / SNAPSHOT).write_bytes(
        (s / "objects" / SNAPSHOT).read_bytes()[:40]), f"{SNAPSHOT}: damaged snapshot"),
    "damaged journal line": (lambda s: write_segments(
        s / "objects", (1, record(1, "a") + record(2, "b")[:-5] + b"xxxx\n" + record(3, "c"))),
        "journal-00000000000000000001.log: line 2: damaged record"),
    "records missing": (lambda s: write_segments(s / "objects", (1, record(1, "a") + record(3, "c"))),
                        "line 2: resourceVersion 3 follows 1: records are missing"),
    "cut record before the last segment": (lambda s: write_segments(
        s / "objects", (1, record(1, "a") + record(2, "b")[:20]), (3, record(3, "c"))),
        "journal-00000000000000000001.log: incomplete record at byte"),
    "admin token": (lambda s: (s / "admin-token").write_text("short\n"), "admin-token: not an admin token"),
    "CA certificate": (lambda s: (s / "ca.crt").write_text("not a certificate"), "ca.crt: not a usable CA"),
    "CA key of another CA": (lambda s: (s / "ca.key").write_bytes(_other_key()), "ca.crt: not a usable CA"),
    "CA key missing": (lambda s: (s / "ca.key").unlink(), "ca.key: is missing"),
    "unreadable": (lambda s: _directory_instead(s / "admin-token"), "admin-token: cannot be read"),
    "endpoint": (lambda s: (s / "endpoint.json").write_text("{"), "endpoint.json: not an endpoint record"),
}


def _directory_instead(path: Path) -> None:
    path.unlink()
    path.mkdir()   # (as root, chmod 000 would not stop the read)


def _other_key() -> bytes:
    from service.embedded_cluster.apiserver.tls import new_authority
    return new_authority().key_pem


@pytest.mark.parametrize("case", sorted(CASES))
async def test_damaged_state_is_a_clear_error(tmp_path: Path, case: str) -> None:
    state = await saved_state(tmp_path)
    if case in ("damaged journal line", "records missing", "cut record before the last segment"):
        (state / "objects" / SNAPSHOT).unlink()      # the segments alone hold the objects here
    damage, expected = CASES[case]
    damage(state)
    assert expected in await start_error(state)


def test_a_record_cut_short_by_a_kill_is_dropped(tmp_path: Path) -> None:
    # The last record of the last segment, without its newline: never applied, never acknowledged.
    write_segments(tmp_path, (1, record(1, "a") + record(2, "b") + record(3, "c")[:-7]))
    loaded = load_state(tmp_path)
    assert loaded.resource_version == 2 and set(loaded.objects[CONFIGMAPS.key]) == {("default", "a"),
                                                                                   ("default", "b")}


async def test_a_state_directory_serves_one_cluster_at_a_time(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with EmbeddedCluster(config(state)):
        assert "is in use by another running embedded cluster" in await start_error(state, released=False)


async def test_a_key_left_alone_by_a_kill_gives_a_new_ca(tmp_path: Path) -> None:
    state = await saved_state(tmp_path)
    (state / "ca.crt").unlink()     # killed between writing the key and the certificate
    async with EmbeddedCluster(config(state)) as cluster:
        assert cluster.ca_pem == (state / "ca.crt").read_bytes()


def test_the_cli_reports_it_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    (state / "objects").mkdir(parents=True)
    (state / "objects" / SNAPSHOT).write_text("{}\n")
    kubeconfig = tmp_path / "kubeconfig"
    assert main(["serve", "--state-dir", str(state), "--no-seed", "--kubeconfig-out", str(kubeconfig)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{state / 'objects' / SNAPSHOT}: damaged snapshot" in err, err
    assert not kubeconfig.exists()


async def test_the_launcher_reports_it_in_one_line(tmp_path: Path) -> None:
    settings = replace(Settings(), data_dir=tmp_path / "var", embedded_seed_demo=False)
    (settings.data_dir / "embedded-cluster").mkdir(parents=True)
    (settings.data_dir / "embedded-cluster" / "admin-token").write_text("x\n")
    with pytest.raises(StateError) as error:
        await start_embedded_cluster(settings)
    assert "admin-token: not an admin token" in str(error.value) and "\n" not in str(error.value)


async def test_a_change_the_journal_cannot_write_never_happens(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    async with EmbeddedCluster(config(state)) as cluster:
        store, rv = cluster.store, cluster.store.resource_version

        def disk_full(fd: int, data: bytes) -> None:
            os.write(fd, data[: len(data) // 2])    # half a record reached the file
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(journal_module, "write_all", disk_full)
        with pytest.raises(StatusError) as refused:
            await store.create(CONFIGMAPS.key, {"metadata": {"name": "lost", "namespace": "default"}})
        assert refused.value.code == 500 and store.resource_version == rv
        assert store.get(CONFIGMAPS.key, "default", "lost") is None
        monkeypatch.undo()
        await store.create(CONFIGMAPS.key, {"metadata": {"name": "kept", "namespace": "default"}})
        # No stop: the segment alone (half record removed) must load, as after a kill.
        loaded = load_state(state / "objects")
        assert set(loaded.objects[CONFIGMAPS.key]) == {("default", "kept")}


async def test_a_failed_fsync_makes_the_store_refuse_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with EmbeddedCluster(config(tmp_path / "state")) as cluster:
        def broken(*_: object) -> None:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(journal_module, "_sync", broken)
        for name in ("first", "second"):
            with pytest.raises(StatusError) as refused:
                await cluster.store.create(CONFIGMAPS.key, {"metadata": {"name": name, "namespace": "default"}})
            assert refused.value.code == 503 and "unusable" in refused.value.message
