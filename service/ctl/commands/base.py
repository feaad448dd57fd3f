"""What every command handler gets, and the helpers mutations and lists share."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from service.ctl import sse
from service.ctl.connection import Connection
from service.ctl.errors import ApiError, CtlError, UsageError
from service.ctl.follow import RETRIES, TRANSIENT_STATUSES, wait_and_show
from service.ctl.render import Column, Output, RowStream
from service.ctl.rest import RestClient, StreamBroken
from service.ctl.views import show_operation

Doc = dict[str, Any]
ALL_PAGES_SIZE = 500          # the gateway's cap
# Watch columns cannot be sized by rows still to come: room for typical values.
_WATCH_WIDTHS = {"ID": 36, "NAME": 28, "TYPE": 24, "TARGET": 30, "STATE": 9, "PHASE": 10, "EVENT": 8, "VERSION": 7,
                 "RESOURCE": 30, "DISK": 20, "VM": 20, "OPERATION": 36}


@dataclass
class Ctx:
    args: argparse.Namespace
    conn: Connection
    api: RestClient
    out: Output

    @property
    def fmt(self) -> str:
        return str(getattr(self.args, "output", "table") or "table")

    def namespace(self) -> str:
        return self.conn.need_namespace()

    def mutation_headers(self) -> dict[str, str]:
        key = getattr(self.args, "idempotency_key", None)
        return {"Idempotency-Key": key} if key else {}


Handler = Callable[[Ctx], Any]


async def finish_mutation(ctx: Ctx, op: Any) -> int:
    """Print the accepted operation, or with ``--wait`` follow it and print how it ended."""
    if not isinstance(op, dict):
        raise CtlError("the gateway answered a mutation without an operation")
    if getattr(ctx.args, "wait", False):
        return await wait_and_show(ctx.api, ctx.out, op, ctx.fmt, float(ctx.args.timeout))
    show_operation(ctx.out, ctx.fmt, op)
    return 0


async def collect(ctx: Ctx, path: str, params: Mapping[str, object]) -> tuple[list[Doc], str]:
    """Every page (no ``--limit``), or the one page ``--limit``/``--continue`` ask for;
    returns the items and the next page's token."""
    limit = int(getattr(ctx.args, "limit", 0) or 0)
    token = str(getattr(ctx.args, "continue_token", "") or "")
    items: list[Doc] = []
    while True:
        page = await ctx.api.get(path, {**params, "pageSize": limit or ALL_PAGES_SIZE, "pageToken": token})
        if not isinstance(page, dict) or not isinstance(page.get("items"), list):
            raise CtlError(f"GET {path}: the gateway answered something other than a list")
        items.extend(i for i in page["items"] if isinstance(i, dict))
        token = str(page.get("nextPageToken") or "")
        if limit or not token:
            return items, token


def hint_next_page(ctx: Ctx, token: str) -> None:
    if token:
        ctx.out.note(f"more items: add --continue {token}")


def watch_rows(ctx: Ctx, columns: list[Column], first: str = "EVENT") -> RowStream:
    shown = [c for c in columns if ctx.fmt == "wide" or not c.wide_only]
    headers = [first, *(c.header for c in shown)]
    return RowStream(ctx.out, headers, [_WATCH_WIDTHS.get(h, len(h)) for h in headers])


async def watch_stream(ctx: Ctx, path: str, params: Mapping[str, object],
                       on_open: Callable[[], None] | None = None) -> AsyncIterator[sse.Event]:
    """The events of a collection watch until Ctrl-C; a dropped stream is watched again
    (the gateway then sends the current objects as ADDED again, so nothing is lost)."""
    failures = 0
    while True:
        try:
            async with ctx.api.stream("GET", path, params=params) as response:
                if on_open is not None:
                    on_open()
                async for event in sse.events(response):
                    failures = 0
                    yield event
        except (StreamBroken, ApiError) as exc:
            if isinstance(exc, ApiError) and exc.status not in TRANSIENT_STATUSES:
                raise
            problem: CtlError | None = exc
        else:
            problem = None
        failures += 1
        if failures > RETRIES:
            raise CtlError(f"lost the watch after {RETRIES} reconnects" + (f": {problem}" if problem else ""))
        ctx.out.note(f"watch interrupted{f' ({problem})' if problem else ''}; watching again")
        await asyncio.sleep(min(0.2 * 2 ** (failures - 1), 5.0))


def key_value(option: str) -> Callable[[str], tuple[str, str]]:
    """An argparse type for KEY=VALUE (labels, annotations)."""
    def parse(value: str) -> tuple[str, str]:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {value!r}")
        return key, val
    parse.__name__ = option
    return parse


def pairs(items: list[tuple[str, str]] | None, option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in items or []:
        if key in out:
            raise UsageError(f"{option}: {key} given twice")
        out[key] = value
    return out
