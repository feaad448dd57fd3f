"""Restores (a disk from a disk snapshot, a VM from a VM snapshot) and clones (a stopped
VM, or a new VM from a VM snapshot)."""

from __future__ import annotations

import argparse
from typing import Any

from service.ctl.commands.base import Ctx, finish_mutation, pairs
from service.ctl.rest import namespaced, segment


async def restore_disk(ctx: Ctx) -> int:
    args = ctx.args
    body: dict[str, Any] = {"name": args.name, "diskSnapshotName": args.snapshot}
    if args.size:
        body["size"] = args.size
    if args.storage_class:
        body["storageClassName"] = args.storage_class
    labels = pairs(args.labels, "--label")
    if labels:
        body["labels"] = labels
    op = await ctx.api.post(namespaced(ctx.namespace(), "/disks:restore"), body, ctx.mutation_headers())
    return await finish_mutation(ctx, op)


async def restore_vm(ctx: Ctx) -> int:
    body = {"virtualMachineSnapshotName": ctx.args.snapshot, "mode": ctx.args.mode}
    path = namespaced(ctx.namespace(), f"/virtual-machines/{segment(ctx.args.name)}:restore")
    op = await ctx.api.post(path, body, ctx.mutation_headers())
    return await finish_mutation(ctx, op)


def rename(value: str) -> dict[str, Any]:
    """``[KIND/]OLD=NEW`` as a NameReplacement."""
    source, sep, new = value.partition("=")
    kind, slash, old = source.rpartition("/") if "/" in source else ("", "", source)
    if not sep or not old or not new or (slash and not kind):
        raise argparse.ArgumentTypeError(f"expected [KIND/]OLD=NEW, got {value!r}")
    origin: dict[str, str] = {"name": old}
    if kind:
        origin["kind"] = kind
    return {"from": origin, "to": new}


def _clone_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"mode": args.mode}
    customization = {k: v for k, v in (("namePrefix", args.name_prefix), ("nameSuffix", args.name_suffix)) if v}
    if customization:
        body["customization"] = customization
    if args.renames:
        body["nameReplacements"] = list(args.renames)
    return body


async def clone_vm(ctx: Ctx) -> int:
    path = namespaced(ctx.namespace(), f"/virtual-machines/{segment(ctx.args.name)}:clone")
    op = await ctx.api.post(path, _clone_body(ctx.args), ctx.mutation_headers())
    return await finish_mutation(ctx, op)


async def vm_from_snapshot(ctx: Ctx) -> int:
    path = namespaced(ctx.namespace(), f"/vm-snapshots/{segment(ctx.args.name)}:clone")
    op = await ctx.api.post(path, _clone_body(ctx.args), ctx.mutation_headers())
    return await finish_mutation(ctx, op)
