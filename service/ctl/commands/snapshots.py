"""get / create / delete / watch of disk snapshots and VM snapshots."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.ctl.commands.base import Ctx, collect, finish_mutation, hint_next_page, pairs, watch_rows, watch_stream
from service.ctl.errors import CtlError
from service.ctl.rest import namespaced, segment
from service.ctl.views import DISK_SNAPSHOT, VM_SNAPSHOT, View, show


@dataclass(frozen=True)
class SnapshotKind:
    collection: str           # the REST collection
    view: View
    source_field: str         # the body field naming what is snapshotted


DISK = SnapshotKind("disk-snapshots", DISK_SNAPSHOT, "virtualDiskName")
VM = SnapshotKind("vm-snapshots", VM_SNAPSHOT, "virtualMachineName")


def _kind(ctx: Ctx) -> SnapshotKind:
    return VM if ctx.args.kind == "vm" else DISK


async def get(ctx: Ctx) -> int:
    kind, namespace = _kind(ctx), ctx.namespace()
    name = ctx.args.name
    if ctx.args.watch:
        return await _watch(ctx, kind, namespace, name)
    if name:
        snapshot = await ctx.api.get(namespaced(namespace, f"/{kind.collection}/{segment(name)}"))
        show(ctx.out, kind.view, ctx.fmt, [snapshot], single=True)
        return 0
    items, token = await collect(ctx, namespaced(namespace, f"/{kind.collection}"),
                                 {"labelSelector": ctx.args.selector})
    show(ctx.out, kind.view, ctx.fmt, items, single=False, extra={"nextPageToken": token} if token else None)
    hint_next_page(ctx, token)
    return 0


async def _watch(ctx: Ctx, kind: SnapshotKind, namespace: str, name: str | None) -> int:
    rows = watch_rows(ctx, list(kind.view.columns))
    # A table's header comes once the watch is open: a person sees it is listening.
    on_open = rows.header if ctx.fmt in ("table", "wide") else None
    async for event in watch_stream(ctx, namespaced(namespace, f"/{kind.collection}:watch"), {"name": name},
                                    on_open):
        doc = event.json()
        snapshot: Any = doc.get("snapshot") if isinstance(doc, dict) else None
        if not isinstance(snapshot, dict):
            raise CtlError(f"the watch sent an event without a snapshot: {event.event}")
        if ctx.fmt == "json":
            ctx.out.json(doc, compact=True)
        elif ctx.fmt == "yaml":
            ctx.out.yaml(doc, separate=True)
        elif ctx.fmt == "name":
            ctx.out.line(kind.view.name(snapshot))
        else:
            shown = [c for c in kind.view.columns if ctx.fmt == "wide" or not c.wide_only]
            rows.row([str(doc.get("type", event.event)), *(c.cell(snapshot) for c in shown)])
    return 0


async def create(ctx: Ctx) -> int:
    kind, namespace, args = _kind(ctx), ctx.namespace(), ctx.args
    body: dict[str, Any] = {kind.source_field: args.source}
    if args.name:
        body["name"] = args.name
    if args.generate_name:
        body["generateName"] = args.generate_name
    if args.required_consistency is not None:
        body["requiredConsistency"] = args.required_consistency
    if kind is VM and args.keep_ip_address:
        body["keepIPAddress"] = args.keep_ip_address
    labels, annotations = pairs(args.labels, "--label"), pairs(args.annotations, "--annotation")
    if labels:
        body["labels"] = labels
    if annotations:
        body["annotations"] = annotations
    op = await ctx.api.post(namespaced(namespace, f"/{kind.collection}"), body, ctx.mutation_headers())
    return await finish_mutation(ctx, op)


async def delete(ctx: Ctx) -> int:
    kind, namespace = _kind(ctx), ctx.namespace()
    op = await ctx.api.delete(namespaced(namespace, f"/{kind.collection}/{segment(ctx.args.name)}"),
                              ctx.mutation_headers())
    return await finish_mutation(ctx, op)
