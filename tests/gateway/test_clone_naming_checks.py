"""The clone name map's checks, pure: every violation at once, each on the field to fix."""

from __future__ import annotations

from service.core.capabilities.clones import Source, check_options, map_violations, name_map
from service.core.domain import ApplyMode
from service.core.requests import CloneOptions, NameReplacement

VM_AND_DISK = [Source("VirtualMachine", "linux-vm"), Source("VirtualDisk", "linux-vm-root"),
               Source("VirtualMachineIPAddress", "linux-vm-ab12cd34")]


def fields(violations: list) -> list[str]:  # type: ignore[type-arg]
    return [v.field for v in violations]


def test_options_need_a_mode_and_something_that_renames() -> None:
    assert fields(check_options(CloneOptions())) == ["mode", "customization"]
    assert check_options(CloneOptions(ApplyMode.STRICT, name_prefix="c-")) == []


def test_affixes_and_replacements_are_1_to_59_characters() -> None:
    too_long = "x" * 60
    found = check_options(CloneOptions(ApplyMode.STRICT, (NameReplacement("linux-vm", too_long),
                                                          NameReplacement("Bad_Name", "ok", "Pod")),
                                       name_prefix="", name_suffix=too_long))
    assert fields(found) == ["name_replacements[0].to", "name_replacements[1].from.name",
                             "name_replacements[1].from.kind", "customization.name_prefix",
                             "customization.name_suffix"]


def test_the_same_object_renamed_twice_is_refused() -> None:
    twice = (NameReplacement("linux-vm", "a"), NameReplacement("linux-vm", "b"))
    assert fields(check_options(CloneOptions(ApplyMode.STRICT, twice))) == ["name_replacements[1].from"]


def test_the_map_says_old_to_new_and_leaves_addresses_to_the_platform() -> None:
    opts = CloneOptions(ApplyMode.DRY_RUN, (NameReplacement("linux-vm", "web", "VirtualMachine"),), name_suffix="-2")
    planned = name_map(opts, VM_AND_DISK)
    assert [(r.kind, r.source_name, r.name, r.reason) for r in planned] == [
        ("VirtualMachine", "linux-vm", "web-2", "Renamed"),
        ("VirtualDisk", "linux-vm-root", "linux-vm-root-2", "Renamed"),
        ("VirtualMachineIPAddress", "linux-vm-ab12cd34", "", "NewAddress")]
    assert map_violations(opts, VM_AND_DISK, planned) == []


def test_names_too_long_after_the_prefix_point_at_the_field_that_made_them() -> None:
    opts = CloneOptions(ApplyMode.STRICT, (NameReplacement("linux-vm", "w" * 59),), name_prefix="p" * 55)
    found = map_violations(opts, VM_AND_DISK, name_map(opts, VM_AND_DISK))
    assert fields(found) == ["name_replacements[0].to", "customization"]
    assert "VirtualMachine 'linux-vm' would be named" in found[0].description


def test_two_objects_mapped_to_one_name_and_replacements_matching_nothing() -> None:
    sources = [Source("VirtualMachine", "vm"), Source("VirtualDisk", "a"), Source("VirtualDisk", "b")]
    opts = CloneOptions(ApplyMode.STRICT, (NameReplacement("a", "same"), NameReplacement("b", "same"),
                                           NameReplacement("ghost", "x")))
    found = map_violations(opts, sources, name_map(opts, sources))
    assert fields(found) == ["name_replacements[1].to", "name_replacements[2].from"]
    assert "would both be named 'same'" in found[0].description
    assert "matches no object" in found[1].description
