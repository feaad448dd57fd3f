"""The command line's grammar: ``dvpctl VERB RESOURCE [NAME] [flags]``, as kubectl.

Connection flags (``--server``, ``--token``, ``-n`` ...) are accepted before the verb and
after the resource alike; a usage error is one line and exit code 2.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import NoReturn

from service.client.config import DEFAULT_REST
from service.ctl.commands import audit, export, operations, restore_clone, snapshots
from service.ctl.commands.base import key_value
from service.ctl.connection import ENV_SERVER, ENV_TOKEN
from service.ctl.errors import EXIT_USAGE

PROG = "dvpctl"
MODES = ("DryRun", "Strict", "BestEffort")
OPERATION_TYPES = ("CREATE_DISK_SNAPSHOT", "DELETE_DISK_SNAPSHOT", "CREATE_VM_SNAPSHOT", "DELETE_VM_SNAPSHOT",
                   "RESTORE_DISK", "RESTORE_VM", "CLONE_VM", "CREATE_VM_FROM_SNAPSHOT", "EXPORT_DISK",
                   "EXPORT_DISK_SNAPSHOT")
OPERATION_STATES = ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED")
SNAPSHOT_FORMATS = ("table", "wide", "json", "yaml", "name")
OPERATION_FORMATS = ("table", "wide", "json", "yaml", "id", "name")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h)?$")
_SCALE = {"s": 1, "m": 60, "h": 3600, None: 1}

EPILOG = """\
exit codes: 0 done (an awaited operation SUCCEEDED), 1 failed (API error, connection,
an operation FAILED/CANCELLED, timeout), 2 usage, 3 export checksum mismatch, 130 Ctrl-C.
See docs/cli.md for every command with an example."""


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (no usage block) with exit code 2."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {' '.join(message.split())} (see '{self.prog} --help')\n")


def seconds(value: str) -> float:
    """An argparse type: seconds (``90``, ``90s``, ``5m``, ``1h``); 0 means no limit."""
    match = _DURATION.match(value.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"expected seconds like 90, 90s, 5m or 1h, got {value!r}")
    return float(match.group(1)) * _SCALE[match.group(2)]


def count(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number < 0 or number > 2**31 - 1:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to {2**31 - 1}, got {value!r}")
    return number


def _connection_flags(p: argparse.ArgumentParser) -> None:
    # SUPPRESS: the flag may be given before the verb or after the resource; neither
    # place overwrites the other with a default.
    s = argparse.SUPPRESS
    group = p.add_argument_group("connection")
    group.add_argument("--server", default=s, metavar="URL",
                       help=f"the gateway's REST URL (default: ${ENV_SERVER}, else the config's rest, "
                            f"else {DEFAULT_REST})")
    group.add_argument("--token", default=s, help=f"bearer token (prefer --token-file or ${ENV_TOKEN}: argv is "
                                                  "visible to other users)")
    group.add_argument("--token-file", default=s, type=Path, metavar="PATH",
                       help=f"file holding the bearer token (default: ${ENV_TOKEN}, else the config's "
                            "token/tokenFile)")
    group.add_argument("--config", default=s, type=Path, metavar="FILE",
                       help="client config file (default: $DVPCTL_CONFIG, else ./var/client.yaml, "
                            "else ~/.config/dvpctl/config.yaml)")
    group.add_argument("--ca-file", default=s, type=Path, metavar="PEM",
                       help="CA bundle to trust for an https server (default: the config's caFile, else "
                            "the system's)")
    group.add_argument("-n", "--namespace", default=s, metavar="NS",
                       help="the namespace (default: the config's namespace)")


def _leaf(sub: argparse._SubParsersAction[Parser], name: str, summary: str, *, aliases: tuple[str, ...] = (),
          description: str = "") -> Parser:
    p: Parser = sub.add_parser(name, aliases=list(aliases), help=summary, description=description or summary,
                               epilog=EPILOG, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _connection_flags(p)
    return p


def _output(p: argparse.ArgumentParser, formats: tuple[str, ...]) -> None:
    p.add_argument("-o", "--output", choices=formats, default="table",
                   help="output format: a table (wide: more columns), the API's JSON or YAML, "
                        "or just names/ids for scripts")


def _mutation(p: argparse.ArgumentParser) -> None:
    _output(p, OPERATION_FORMATS)
    p.add_argument("--wait", action="store_true",
                   help="follow the operation to its end; exit 0 if it SUCCEEDED, 1 if it FAILED or was CANCELLED")
    p.add_argument("--timeout", type=seconds, default=300.0, metavar="SECONDS",
                   help="with --wait: give up after this long (90, 90s, 5m, 1h; 0: never)")
    p.add_argument("--idempotency-key", default=None, metavar="KEY",
                   help="replaying the same call with the same key returns the same operation")


def _paging(p: argparse.ArgumentParser, default_limit: int) -> None:
    p.add_argument("--limit", type=count, default=default_limit, metavar="N",
                   help="one page of at most N items (0: every page)")
    p.add_argument("--continue", dest="continue_token", default=None, metavar="TOKEN",
                   help="the page after the one that printed this token")


def _labels(p: argparse.ArgumentParser, *, annotations: bool) -> None:
    p.add_argument("-l", "--label", dest="labels", action="append", type=key_value("label"), metavar="KEY=VALUE",
                   help="a label of the new object (repeatable)")
    if annotations:
        p.add_argument("--annotation", dest="annotations", action="append", type=key_value("annotation"),
                       metavar="KEY=VALUE", help="an annotation of the new object (repeatable)")


def _watch(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("-w", "--watch", action="store_true", help=f"stream {what} until Ctrl-C")


def build() -> Parser:
    root = Parser(prog=PROG, description="A command line for the DVP Snapshot Gateway: snapshots, restores, clones, "
                  "disk exports, operations and the audit log, over its REST API.", epilog=EPILOG)
    _connection_flags(root)
    verbs = root.add_subparsers(dest="verb", metavar="VERB", required=True, parser_class=Parser)
    _get(verbs)
    _create(verbs)
    _delete(verbs)
    _restore(verbs)
    _clone(verbs)
    _export(verbs)
    _operation_verbs(verbs)
    _audit(verbs)
    return root


def _resources(verbs: argparse._SubParsersAction[Parser], verb: str, summary: str) -> argparse._SubParsersAction[
        Parser]:
    p = verbs.add_parser(verb, help=summary, description=summary, epilog=EPILOG)
    return p.add_subparsers(dest="resource", metavar="RESOURCE", required=True, parser_class=Parser)


def _get(verbs: argparse._SubParsersAction[Parser]) -> None:
    res = _resources(verbs, "get", "show snapshots or operations (a table, JSON, YAML; -w to watch)")
    for kind, name, aliases, what in (("disk", "disk-snapshots", ("disk-snapshot", "vdsnapshot", "vdsnapshots", "vds"),
                                       "VirtualDiskSnapshots"),
                                      ("vm", "vm-snapshots", ("vm-snapshot", "vmsnapshot", "vmsnapshots", "vms"),
                                       "VirtualMachineSnapshots")):
        p = _leaf(res, name, f"list {what}, or show one", aliases=aliases)
        p.add_argument("name", nargs="?", metavar="NAME", help="one snapshot (default: all of the namespace)")
        _output(p, SNAPSHOT_FORMATS)
        _watch(p, "changes (the current objects first, as ADDED)")
        p.add_argument("-l", "--selector", default=None, metavar="SELECTOR",
                       help="a label selector, e.g. app=web,tier!=db")
        _paging(p, 0)
        p.set_defaults(handler=snapshots.get, kind=kind)
    p = _leaf(res, "operations", "list operations (newest first), or show one", aliases=("operation", "op", "ops"))
    p.add_argument("id", nargs="?", metavar="ID", help="one operation (default: the list)")
    _output(p, OPERATION_FORMATS)
    _watch(p, "the operation's versions until it is done (needs ID)")
    p.add_argument("-A", "--all-namespaces", action="store_true",
                   help="operations of every namespace (default: the namespace of -n or the config, else all)")
    p.add_argument("--type", choices=OPERATION_TYPES, default=None, help="only operations of this type")
    p.add_argument("--state", choices=OPERATION_STATES, default=None, help="only operations in this state")
    p.add_argument("--actor", default=None, help="only operations of this subject")
    _paging(p, 0)
    p.set_defaults(handler=operations.get)


def _create(verbs: argparse._SubParsersAction[Parser]) -> None:
    res = _resources(verbs, "create", "snapshot a disk or a VM (an operation)")
    p = _leaf(res, "disk-snapshot", "snapshot a VirtualDisk (writes a VirtualDiskSnapshot)",
              aliases=("disk-snapshots", "vdsnapshot", "vds"))
    p.add_argument("name", nargs="?", metavar="NAME", help="the snapshot's name (default: generated from the disk's)")
    p.add_argument("--disk", dest="source", required=True, metavar="DISK", help="the VirtualDisk to snapshot")
    _snapshot_flags(p)
    p.set_defaults(handler=snapshots.create, kind="disk")
    p = _leaf(res, "vm-snapshot", "snapshot a VirtualMachine (writes a VirtualMachineSnapshot)",
              aliases=("vm-snapshots", "vmsnapshot", "vms"))
    p.add_argument("name", nargs="?", metavar="NAME", help="the snapshot's name (default: generated from the VM's)")
    p.add_argument("--vm", dest="source", required=True, metavar="VM", help="the VirtualMachine to snapshot")
    p.add_argument("--keep-ip-address", choices=("Always", "Never"), default=None,
                   help="Always: a dynamic IP address becomes static so a restore gets it back; Never: it stays "
                        "dynamic (default: the gateway's, Always)")
    _snapshot_flags(p)
    p.set_defaults(handler=snapshots.create, kind="vm")


def _snapshot_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--generate-name", default=None, metavar="PREFIX",
                   help="without NAME: the prefix of a generated name")
    p.add_argument("--required-consistency", action=argparse.BooleanOptionalAction, default=None,
                   help="refuse to snapshot a running VM's disks unless its filesystems can be frozen "
                        "(default: the gateway's, true)")
    _labels(p, annotations=True)
    _mutation(p)


def _delete(verbs: argparse._SubParsersAction[Parser]) -> None:
    res = _resources(verbs, "delete", "delete a snapshot (an operation)")
    for kind, name, aliases in (("disk", "disk-snapshot", ("disk-snapshots", "vdsnapshot", "vds")),
                                ("vm", "vm-snapshot", ("vm-snapshots", "vmsnapshot", "vms"))):
        p = _leaf(res, name, f"delete a {name}", aliases=aliases)
        p.add_argument("name", metavar="NAME", help="the snapshot")
        _mutation(p)
        p.set_defaults(handler=snapshots.delete, kind=kind)


def _restore(verbs: argparse._SubParsersAction[Parser]) -> None:
    res = _resources(verbs, "restore", "restore a disk or a VM from a snapshot (an operation)")
    p = _leaf(res, "disk", "create a VirtualDisk from a VirtualDiskSnapshot", aliases=("vd",))
    p.add_argument("name", metavar="NEW_DISK", help="the name of the new VirtualDisk")
    p.add_argument("--snapshot", required=True, metavar="DISK_SNAPSHOT", help="the VirtualDiskSnapshot to restore")
    p.add_argument("--size", default=None, help="a quantity like 20Gi, not smaller than the original (default: "
                                                "the original disk's)")
    p.add_argument("--storage-class", default=None, help="default: the original disk's storage class")
    _labels(p, annotations=False)
    _mutation(p)
    p.set_defaults(handler=restore_clone.restore_disk)
    p = _leaf(res, "vm", "restore a VirtualMachine from its VirtualMachineSnapshot", aliases=("virtual-machine",),
              description="Restore a VM from a VM snapshot. DryRun changes nothing and lists every conflict; "
                          "Strict is all or nothing; BestEffort drops missing images.")
    p.add_argument("name", metavar="VM", help="the VirtualMachine")
    p.add_argument("--snapshot", required=True, metavar="VM_SNAPSHOT", help="the VirtualMachineSnapshot")
    _mode(p)
    _mutation(p)
    p.set_defaults(handler=restore_clone.restore_vm)


def _mode(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", choices=MODES, default="Strict", help="DryRun reports, Strict is all or nothing, "
                                                                   "BestEffort drops what is missing")
    p.add_argument("--dry-run", dest="mode", action="store_const", const="DryRun", help="the same as --mode DryRun")


def _clone(verbs: argparse._SubParsersAction[Parser]) -> None:
    res = _resources(verbs, "clone", "clone a stopped VM, or create a VM from a VM snapshot (an operation)")
    for name, aliases, handler, summary in (
            ("vm", ("virtual-machine",), restore_clone.clone_vm, "clone a stopped VirtualMachine and its disks"),
            ("vm-snapshot", ("vmsnapshot", "vms"), restore_clone.vm_from_snapshot,
             "create a new VirtualMachine (and its disks) from a VirtualMachineSnapshot")):
        p = _leaf(res, name, summary, aliases=aliases,
                  description=f"{summary[0].upper()}{summary[1:]}. Each new name is PREFIX + (the --rename target, "
                              "or the old name) + SUFFIX; at least one must rename something. DryRun creates "
                              "nothing and shows the name map.")
        p.add_argument("name", metavar="VM" if name == "vm" else "VM_SNAPSHOT", help="the source")
        p.add_argument("--name-prefix", default=None, metavar="PREFIX", help="prefix of every new name")
        p.add_argument("--name-suffix", default=None, metavar="SUFFIX", help="suffix of every new name")
        p.add_argument("--rename", dest="renames", action="append", type=restore_clone.rename,
                       metavar="[KIND/]OLD=NEW", help="a new name for one object (repeatable)")
        _mode(p)
        _mutation(p)
        p.set_defaults(handler=handler)


def _export(verbs: argparse._SubParsersAction[Parser]) -> None:
    res = _resources(verbs, "export", "download a disk's or disk snapshot's bytes to a file")
    for kind, aliases in (("disk", ("vd",)), ("disk-snapshot", ("vdsnapshot", "vds"))):
        p = _leaf(res, kind, f"download a {kind} export: resumable, sparse, SHA-256 verified", aliases=aliases,
                  description=f"Download the export of a {kind} to a file: resumable (rerun the same command), "
                              "sparse (zero blocks stay holes) and verified against the gateway's SHA-256. "
                              "The same as `dvp-gateway download` (docs/download.md).")
        p.add_argument("name", metavar="NAME", help=f"the {kind}")
        p.add_argument("-o", "--output", dest="file", required=True, type=Path, metavar="FILE",
                       help="where to write the image (FILE.part and FILE.part.json while downloading)")
        p.add_argument("--ttl", default=None, help="how long the export lives without access, e.g. 120s "
                                                   "(default: the gateway's, 120s)")
        p.add_argument("--no-resume", dest="resume", action="store_false",
                       help="discard a partial download and start over")
        p.add_argument("--no-verify", dest="verify", action="store_false", help="do not check the SHA-256")
        p.add_argument("--retries", type=count, default=5, metavar="N",
                       help="retries of a dropped connection or a busy gateway without progress")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, only the final line")
        p.set_defaults(handler=export.export, kind=kind)


def _operation_verbs(verbs: argparse._SubParsersAction[Parser]) -> None:
    op_aliases = ("op", "operations")
    res = _resources(verbs, "wait", "wait for an operation to end")
    p = _leaf(res, "operation", "follow an operation to its end; exit 0 if it SUCCEEDED, else 1", aliases=op_aliases)
    p.add_argument("id", metavar="ID", help="the operation")
    _output(p, OPERATION_FORMATS)
    p.add_argument("--timeout", type=seconds, default=300.0, metavar="SECONDS",
                   help="give up after this long (90, 90s, 5m, 1h; 0: never)")
    p.set_defaults(handler=operations.wait)

    res = _resources(verbs, "cancel", "call an operation off")
    p = _leaf(res, "operation", "ask for an operation to be called off (it ends CANCELLED)", aliases=op_aliases)
    p.add_argument("id", metavar="ID", help="the operation")
    p.add_argument("--force", action="store_true",
                   help="needed to call off a VM restore in progress (which may leave the VM half restored)")
    _mutation(p)
    p.set_defaults(handler=operations.cancel)

    res = _resources(verbs, "timeline", "show the transitions of an operation")
    p = _leaf(res, "operation", "every state/phase transition of an operation, oldest first", aliases=op_aliases)
    p.add_argument("id", metavar="ID", help="the operation")
    _output(p, ("table", "json", "yaml"))
    p.set_defaults(handler=operations.timeline)


def _audit(verbs: argparse._SubParsersAction[Parser]) -> None:
    res = _resources(verbs, "audit", "query, export and verify the audit log")
    p = _leaf(res, "list", "audit events, oldest first, one page at a time", aliases=("ls", "get"),
              description="List audit events, oldest first. -n filters by namespace (the config's namespace "
                          "is not applied: the audit log is read across namespaces).")
    _audit_filters(p)
    _output(p, ("table", "wide", "json", "yaml"))
    _paging(p, 100)
    p.add_argument("--all", action="store_true", help="every page (the same as --limit 0)")
    p.set_defaults(handler=audit.list_events)

    p = _leaf(res, "export", "the whole filtered audit log as JSON Lines or CSV",
              description="Stream the whole filtered audit log, oldest first, to stdout or a file.")
    _audit_filters(p)
    p.add_argument("--format", choices=tuple(audit.MEDIA_TYPES), default="jsonl",
                   help="JSON Lines (one event per line) or CSV (a header row; details as a JSON string)")
    p.add_argument("-o", "--output", dest="file", default="-", metavar="FILE",
                   help="where to write it (-: stdout); a file appears only once the export is complete")
    p.set_defaults(handler=audit.export)

    p = _leaf(res, "verify", "recompute the hash chain; exit 1 if it is broken",
              description="Recompute the audit log's hash chain and report the first broken link.")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="stream the progress (default: when stderr is a terminal)")
    _output(p, ("table", "json", "yaml"))
    p.set_defaults(handler=audit.verify)


def _audit_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--actor", default=None, help="only events of this subject")
    p.add_argument("--action", default=None, help="only this method, e.g. CreateDiskSnapshot")
    p.add_argument("--outcome", choices=("SUCCESS", "DENIED", "ERROR"), default=None, help="only this outcome")
    p.add_argument("--resource", default=None,
                   help="a prefix (disk-snapshots/) or an exact resource (disk-snapshots/NAME)")
    p.add_argument("--since", type=audit.moment, default=None, metavar="TIME",
                   help="RFC 3339 time (inclusive) or a duration ago: 30s, 10m, 2h, 7d")
    p.add_argument("--until", type=audit.moment, default=None, metavar="TIME",
                   help="RFC 3339 time (exclusive) or a duration ago")
