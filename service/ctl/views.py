"""The columns of each kind of object, and the ``-o`` formats that print it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from service.ctl.render import Column, Output, age, short_time, text

Doc = dict[str, Any]


def _get(*path: str) -> Any:
    def cell(item: Doc) -> str:
        value: Any = item
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return text(value)
    return cell


def _ref(key: str) -> Any:
    def cell(item: Doc) -> str:
        ref = item.get(key)
        return f"{ref.get('kind', '')}/{ref.get('name', '')}" if isinstance(ref, dict) else ""
    return cell


def _latest_condition(item: Doc) -> Doc | None:
    conditions = [c for c in item.get("conditions") or [] if isinstance(c, dict)]
    return max(conditions, key=lambda c: str(c.get("lastTransitionTime") or ""), default=None)


def condition_summary(item: Doc) -> str:
    latest = _latest_condition(item)
    if latest is None:
        return ""
    words = f"{latest.get('type', '')}={latest.get('status', '')}"
    if latest.get("reason"):
        words += f" {latest['reason']}"
    if latest.get("message"):
        words += f": {latest['message']}"
    return text(words)


def _error_reason(item: Doc) -> str:
    error = item.get("error")
    return text(error.get("reason") or error.get("code")) if isinstance(error, dict) else ""


@dataclass(frozen=True)
class View:
    kind: str                                  # what ``-o name`` prints before the slash
    columns: Sequence[Column]
    key: str = "name"                          # the field ``-o name`` / ``-o id`` prints
    formats: tuple[str, ...] = ("table", "wide", "json", "yaml", "name")
    empty: str = field(default="No resources found.")

    def name(self, item: Doc) -> str:
        return f"{self.kind}/{item.get(self.key, '')}"


DISK_SNAPSHOT = View("disk-snapshot", [
    Column("NAME", _get("name")), Column("PHASE", _get("phase")), Column("CONSISTENT", _get("consistent")),
    Column("AGE", lambda s: age(s.get("createTime"))),
    Column("DISK", _get("virtualDiskName"), wide_only=True),
    Column("REQUIRED-CONSISTENCY", _get("requiredConsistency"), wide_only=True),
    Column("VOLUMESNAPSHOT", _get("volumeSnapshotName"), wide_only=True),
    Column("OPERATION", _get("operationId"), wide_only=True),
])

VM_SNAPSHOT = View("vm-snapshot", [
    Column("NAME", _get("name")), Column("PHASE", _get("phase")), Column("CONSISTENT", _get("consistent")),
    Column("AGE", lambda s: age(s.get("createTime"))),
    Column("VM", _get("virtualMachineName"), wide_only=True),
    Column("KEEP-IP", _get("keepIPAddress"), wide_only=True),
    Column("DISK-SNAPSHOTS", lambda s: ",".join(map(str, s.get("virtualDiskSnapshotNames") or [])), wide_only=True),
    Column("OPERATION", _get("operationId"), wide_only=True),
])

OPERATION = View("operation", [
    Column("ID", _get("id")), Column("TYPE", _get("type")), Column("TARGET", _ref("target")),
    Column("STATE", _get("state")), Column("PHASE", _get("phase")),
    Column("AGE", lambda o: age(o.get("createTime"))),
    Column("NAMESPACE", _get("namespace"), wide_only=True), Column("RESOURCE", _ref("resource"), wide_only=True),
    Column("ACTOR", _get("actor"), wide_only=True), Column("ERROR", _error_reason, wide_only=True),
    Column("CONDITION", condition_summary, wide_only=True),
], key="id", formats=("table", "wide", "json", "yaml", "id", "name"), empty="No operations found.")

TRANSITION = View("transition", [
    Column("SEQ", _get("seq")), Column("TIME", lambda t: short_time(t.get("time"))), Column("STATE", _get("state")),
    Column("PHASE", _get("phase")), Column("REASON", _get("reason")), Column("MESSAGE", _get("message")),
], key="seq", formats=("table", "json", "yaml"), empty="No transitions.")

RESULT = View("result", [
    Column("KIND", _get("kind")), Column("NAME", _get("name")), Column("STATUS", _get("status")),
    Column("REASON", _get("reason")), Column("MESSAGE", _get("message")),
])

# A clone's results are its name map: where each new object comes from.
NAME_MAP = View("result", [
    Column("KIND", _get("kind")), Column("SOURCE", _get("sourceName")),
    Column("NAME", lambda r: text(r.get("name")) or "(named by the platform)"), Column("STATUS", _get("status")),
    Column("REASON", _get("reason")), Column("MESSAGE", _get("message")),
])

AUDIT_EVENT = View("audit-event", [
    Column("TIME", lambda e: short_time(e.get("time"))), Column("ACTOR", _get("actor")),
    Column("ACTION", _get("action")), Column("NAMESPACE", _get("namespace")), Column("RESOURCE", _get("resource")),
    Column("OUTCOME", _get("outcome")),
    Column("ID", _get("id"), wide_only=True), Column("PROTOCOL", _get("protocol"), wide_only=True),
    Column("CODE", _get("code"), wide_only=True), Column("REASON", _get("reason"), wide_only=True),
    Column("OPERATION", _get("operationId"), wide_only=True), Column("REQUEST", _get("requestId"), wide_only=True),
], key="id", formats=("table", "wide", "json", "yaml"), empty="No audit events found.")


def show(output: Output, view: View, fmt: str, items: list[Doc], *, single: bool,
         extra: Doc | None = None) -> None:
    """Print ``items`` as ``fmt``: one object as itself when ``single``, else ``{"items": [...]}``."""
    if fmt in ("json", "yaml"):
        doc: Any = items[0] if single and items else {"items": items, **(extra or {})}
        output.json(doc) if fmt == "json" else output.yaml(doc)
    elif fmt == "name":
        for item in items:
            output.line(view.name(item))
    elif fmt == "id":
        for item in items:
            output.line(text(item.get(view.key)))
    else:
        output.table(view.columns, items, wide=fmt == "wide", empty="" if single else view.empty)


def show_operation(output: Output, fmt: str, op: Doc) -> None:
    """A mutation's answer: the operation; in a table, then its results (a DryRun's conflicts,
    a clone's name map) and its warnings on stderr."""
    show(output, OPERATION, fmt, [op], single=True)
    if fmt not in ("table", "wide"):
        return
    results = [r for r in op.get("results") or [] if isinstance(r, dict)]
    if results:
        output.line()
        view = NAME_MAP if any(r.get("sourceName") for r in results) else RESULT
        output.table(view.columns, results, wide=True)
    for warning in op.get("warnings") or []:
        output.warn(str(warning))
