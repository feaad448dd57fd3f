"""The clone naming rule, one table through both sides: the gateway's (service.cluster.naming,
which plans the name map before anything is written) and the embedded controllers' (which
name what they create from the custom resource the gateway wrote, after translation)."""

from __future__ import annotations

import pytest

from service.cluster.naming import clone_name
from service.cluster.translate import clone_spec
from service.core.idempotency import request_document
from service.core.requests import CloneOptions, NameReplacement
from service.embedded_cluster.controllers.operations import renamer

R = NameReplacement

# (options, kind, old name, expected new name)
TABLE: list[tuple[CloneOptions, str, str, str]] = [
    (CloneOptions(name_prefix="c-"), "VirtualMachine", "linux-vm", "c-linux-vm"),
    (CloneOptions(name_suffix="-copy"), "VirtualDisk", "linux-vm-root", "linux-vm-root-copy"),
    (CloneOptions(name_prefix="a-", name_suffix="-b"), "VirtualDisk", "root", "a-root-b"),
    (CloneOptions(name_replacements=(R("linux-vm", "web"),)), "VirtualMachine", "linux-vm", "web"),
    (CloneOptions(name_replacements=(R("linux-vm", "web"),)), "VirtualDisk", "linux-vm-root", "linux-vm-root"),
    # a replacement without a kind matches any kind with that name
    (CloneOptions(name_replacements=(R("x", "y"),)), "VirtualDisk", "x", "y"),
    # with a kind it matches only that kind
    (CloneOptions(name_replacements=(R("x", "y", "VirtualMachine"),)), "VirtualDisk", "x", "x"),
    # the exact kind wins over a kind-less replacement of the same name
    (CloneOptions(name_replacements=(R("x", "any"), R("x", "disk", "VirtualDisk"))), "VirtualDisk", "x", "disk"),
    # prefix and suffix wrap the replacement too
    (CloneOptions(name_replacements=(R("linux-vm", "web"),), name_prefix="p-", name_suffix="-s"),
     "VirtualMachine", "linux-vm", "p-web-s"),
]


@pytest.mark.parametrize(("options", "kind", "old", "expected"), TABLE)
def test_gateway_and_embedded_cluster_name_a_clone_alike(options: CloneOptions, kind: str, old: str,
                                                         expected: str) -> None:
    gateway = clone_name(kind, old, prefix=options.name_prefix or "", suffix=options.name_suffix or "",
                         replacements=[(r.from_kind, r.from_name, r.to) for r in options.name_replacements])
    # The embedded cluster sees only what the gateway writes: the CRD's spelling of the options.
    written = clone_spec(request_document(options))
    embedded = renamer(written)(kind, old)
    assert gateway == expected
    assert embedded == expected
