"""Pure helpers of the simulated controllers: disk contents, ranges, durations, quantities, naming."""

from __future__ import annotations

import hashlib

import pytest

from service.embedded_cluster.controllers.content import BLOCK, STRIPE, disk_content, disk_sha256, iter_disk_content
from service.embedded_cluster.controllers.dataexport import parse_duration
from service.embedded_cluster.controllers.exporter import RangeNotSatisfiable, parse_range
from service.embedded_cluster.controllers.kube import format_quantity, parse_quantity, same_status, set_condition
from service.embedded_cluster.controllers.machines import next_phase, wants_running
from service.embedded_cluster.controllers.operations import renamer


def test_disk_content_is_sparse_deterministic_and_seed_dependent() -> None:
    size = 3 * STRIPE + 1000
    head = disk_content("seed-a", size, 0, BLOCK)
    assert head == disk_content("seed-a", size, 0, BLOCK)
    assert head != disk_content("seed-b", size, 0, BLOCK)
    assert head != bytes(BLOCK)
    assert disk_content("seed-a", size, BLOCK, 4096) == bytes(4096)            # zeros between blocks
    assert disk_content("seed-a", size, 3 * STRIPE, 2000) != bytes(1000)       # the last, short stripe
    assert len(disk_content("seed-a", size, 3 * STRIPE, 2000)) == 1000          # clipped at the end
    assert disk_content("seed-a", size, size, 10) == b""


def test_pieces_respect_the_chunk_size_and_join_to_the_whole() -> None:
    size = STRIPE + BLOCK + 17
    pieces = list(iter_disk_content("s", size, 5, None, chunk=10_000))
    assert max(len(p) for p in pieces) <= 10_000
    joined = b"".join(pieces)
    assert len(joined) == size - 5
    assert joined[STRIPE - 5:STRIPE - 5 + 64] == disk_content("s", size, STRIPE, 64)


def test_disk_sha256_matches_a_direct_hash() -> None:
    size = 2 * STRIPE + 12345
    assert disk_sha256("x", size) == hashlib.sha256(disk_content("x", size, 0, size)).hexdigest()


@pytest.mark.parametrize(("header", "size", "expected"), [
    (None, 100, None), ("bytes=0-9", 100, (0, 10)), ("bytes=90-", 100, (90, 100)), ("bytes=-10", 100, (90, 100)),
    ("bytes=-1000", 100, (0, 100)), ("bytes=50-1000", 100, (50, 100)), ("bytes=9-3", 100, None),
    ("items=0-1", 100, None), ("bytes=0-1,5-6", 100, None), ("bytes=-", 100, None),
])
def test_parse_range(header: str | None, size: int, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=100-200", "bytes=-0"])
def test_unsatisfiable_ranges(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 100)


@pytest.mark.parametrize(("text", "seconds"), [
    ("2m", 120.0), ("30s", 30.0), ("1h", 3600.0), ("1h30m", 5400.0), ("1.5s", 1.5), ("250ms", 0.25),
    ("", None), ("2", None), ("m", None), ("2m-", None), ("2d", None),
])
def test_parse_duration(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("value", "size"), [
    ("10Gi", 10 << 30), ("512Mi", 512 << 20), ("1G", 10**9), ("1.5Gi", 3 << 29), (1024, 1024), ("100", 100),
    ("ten", None), (-1, None), (True, None), ("", None),
])
def test_parse_quantity(value: object, size: int | None) -> None:
    assert parse_quantity(value) == size


def test_format_quantity_is_the_shortest_exact_form() -> None:
    assert format_quantity(10 << 30) == "10Gi"
    assert format_quantity(1536 << 20) == "1536Mi"
    assert format_quantity(1000) == "1000"


def test_renamer_applies_replacement_then_prefix_and_suffix() -> None:
    rename = renamer({"customization": {"namePrefix": "p-", "nameSuffix": "-s"},
                      "nameReplacement": [{"from": {"kind": "VirtualMachine", "name": "vm"}, "to": "web"},
                                          {"from": {"name": "disk"}, "to": "data"}]})
    assert rename("VirtualMachine", "vm") == "p-web-s"
    assert rename("VirtualDisk", "vm") == "p-vm-s"          # the kind must match when it is given
    assert rename("VirtualDisk", "disk") == "p-data-s"      # no kind: any kind
    assert renamer({})("VirtualDisk", "x") == "x"


@pytest.mark.parametrize(("policy", "power", "running"), [
    ("AlwaysOn", "off", True), ("AlwaysOff", "on", False), ("Manual", "", False), ("Manual", "on", True),
    ("AlwaysOnUnlessStoppedManually", "", True), ("AlwaysOnUnlessStoppedManually", "off", False),
])
def test_run_policy(policy: str, power: str, running: bool) -> None:
    vm = {"metadata": {"annotations": {"embedded.dvp.io/power": power}}, "spec": {"runPolicy": policy}}
    assert wants_running(vm) is running


def test_power_state_machine_steps() -> None:
    assert next_phase("", True, True) == "Starting"
    assert next_phase("", True, False) == "Pending"
    assert next_phase("Starting", True, True) == "Running"
    assert next_phase("Running", False, True) == "Stopping"
    assert next_phase("Stopping", False, True) == "Stopped"
    assert next_phase("Pending", False, False) == "Stopped"


def test_the_migrating_knob_moves_a_running_vm_to_migrating_and_back() -> None:
    assert next_phase("Running", True, True, migrating=True) == "Migrating"
    assert next_phase("Migrating", True, True, migrating=True) == "Migrating"
    assert next_phase("Migrating", True, True) == "Running"
    assert next_phase("Starting", True, True, migrating=True) == "Running"   # only a running guest migrates
    assert next_phase("Migrating", False, True, migrating=True) == "Stopping"


def test_conditions_keep_their_transition_time_while_status_holds() -> None:
    st: dict[str, object] = {}
    set_condition(st, "Ready", "False", "Pending", "waiting")
    first = dict(st["conditions"][0])  # type: ignore[index]
    first["lastTransitionTime"] = "2020-01-01T00:00:00Z"
    st["conditions"] = [first]
    set_condition(st, "Ready", "False", "Provisioning", "still waiting")
    assert st["conditions"][0]["lastTransitionTime"] == "2020-01-01T00:00:00Z"  # type: ignore[index]
    set_condition(st, "Ready", "True", "Ready")
    assert st["conditions"][0]["lastTransitionTime"] != "2020-01-01T00:00:00Z"  # type: ignore[index]
    assert same_status({"status": st}, dict(st))
