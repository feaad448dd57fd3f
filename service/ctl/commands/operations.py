"""Operations: get, list, watch, timeline, wait, cancel."""

from __future__ import annotations

from typing import Any

from service.ctl.commands.base import Ctx, collect, finish_mutation, hint_next_page, watch_rows
from service.ctl.errors import UsageError
from service.ctl.follow import follow, wait_and_show
from service.ctl.rest import segment
from service.ctl.views import OPERATION, TRANSITION, show


def _path(op_id: str) -> str:
    return f"/v1/operations/{segment(op_id)}"


async def get(ctx: Ctx) -> int:
    args = ctx.args
    if args.id:
        if args.watch:
            return await _watch(ctx, args.id)
        show(ctx.out, OPERATION, ctx.fmt, [await ctx.api.get(_path(args.id))], single=True)
        return 0
    if args.watch:
        raise UsageError("--watch follows one operation: give its ID (the gateway has no watch of the list)")
    namespace = "" if args.all_namespaces else ctx.conn.namespace
    params = {"namespace": namespace, "type": args.type, "state": args.state, "actor": args.actor}
    items, token = await collect(ctx, "/v1/operations", params)
    show(ctx.out, OPERATION, ctx.fmt, items, single=False, extra={"nextPageToken": token} if token else None)
    hint_next_page(ctx, token)
    return 0


async def _watch(ctx: Ctx, op_id: str) -> int:
    rows = watch_rows(ctx, list(OPERATION.columns), first="VERSION")
    shown = [c for c in OPERATION.columns if ctx.fmt == "wide" or not c.wide_only]

    def seen(op: dict[str, Any]) -> None:
        if ctx.fmt == "json":
            ctx.out.json(op, compact=True)
        elif ctx.fmt == "yaml":
            ctx.out.yaml(op, separate=True)
        elif ctx.fmt in ("id", "name"):
            ctx.out.line(op.get("id", "") if ctx.fmt == "id" else OPERATION.name(op))
        else:
            rows.row([str(op.get("version", "")), *(c.cell(op) for c in shown)])

    await follow(ctx.api, op_id, seen)
    return 0


async def timeline(ctx: Ctx) -> int:
    doc = await ctx.api.get(f"{_path(ctx.args.id)}/timeline")
    items = [t for t in (doc.get("items") if isinstance(doc, dict) else None) or [] if isinstance(t, dict)]
    show(ctx.out, TRANSITION, ctx.fmt, items, single=False)
    return 0


async def wait(ctx: Ctx) -> int:
    op = await ctx.api.get(_path(ctx.args.id))
    return await wait_and_show(ctx.api, ctx.out, op, ctx.fmt, float(ctx.args.timeout))


async def cancel(ctx: Ctx) -> int:
    body = {"force": True} if ctx.args.force else None
    op = await ctx.api.post(f"{_path(ctx.args.id)}:cancel", body, ctx.mutation_headers())
    return await finish_mutation(ctx, op)
