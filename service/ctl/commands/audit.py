"""The audit log: list (filters, paging), export (JSON Lines or CSV), verify the hash chain."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from service.ctl.commands.base import Ctx, collect, hint_next_page
from service.ctl.errors import EXIT_FAILED, CtlError
from service.ctl.render import Column, parse_time, text
from service.ctl.rest import StreamBroken
from service.ctl.views import AUDIT_EVENT, View, show

MEDIA_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv"}
_AGO = re.compile(r"^(\d{1,9})([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

VERIFICATION = View("verification", [
    Column("OK", lambda v: text(v.get("ok"))), Column("CHECKED", lambda v: text(v.get("checked"))),
    Column("FIRST-BAD-ID", lambda v: text(v.get("firstBadId"))), Column("MESSAGE", lambda v: text(v.get("message"))),
], formats=("table", "json", "yaml"))


def moment(value: str) -> str:
    """An argparse type: an RFC 3339 time, or a duration ago (``30s``, ``10m``, ``2h``, ``7d``)."""
    match = _AGO.match(value)
    if match:
        ago = timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])
        return (datetime.now(UTC) - ago).strftime("%Y-%m-%dT%H:%M:%SZ")
    if parse_time(value) is None:
        raise argparse.ArgumentTypeError(f"expected an RFC 3339 time or a duration like 10m, got {value!r}")
    return value


def _filters(ctx: Ctx) -> dict[str, object]:
    args = ctx.args
    # Only an explicit -n filters: the audit log is read across namespaces.
    return {"actor": args.actor, "namespace": getattr(args, "namespace", None), "resource": args.resource,
            "action": args.action, "outcome": args.outcome, "since": args.since, "until": args.until}


async def list_events(ctx: Ctx) -> int:
    if ctx.args.all:
        ctx.args.limit = 0
    items, token = await collect(ctx, "/v1/audit/events", _filters(ctx))
    show(ctx.out, AUDIT_EVENT, ctx.fmt, items, single=False, extra={"nextPageToken": token} if token else None)
    hint_next_page(ctx, token)
    return 0


async def export(ctx: Ctx) -> int:
    target: Path | None = None if ctx.args.file in (None, "-") else Path(ctx.args.file)
    headers = {"Accept": MEDIA_TYPES[ctx.args.format]}
    async with ctx.api.stream("GET", "/v1/audit/events:export", params=_filters(ctx), headers=headers) as response:
        with _sink(target, ctx) as write, ctx.api.translate_errors(streaming=True):
            async for chunk in response.content.iter_chunked(1 << 16):
                write(chunk)
    if target is not None:
        ctx.out.note(f"audit log exported to {target}")
    return 0


@contextlib.contextmanager
def _sink(target: Path | None, ctx: Ctx) -> Any:
    if target is None:
        buffer = ctx.out.stdout.buffer if hasattr(ctx.out.stdout, "buffer") else None

        def to_stdout(chunk: bytes) -> None:
            if buffer is not None:
                buffer.write(chunk)
            else:
                ctx.out.stdout.write(chunk.decode())

        yield to_stdout
        ctx.out.stdout.flush()
        return
    # Written next to the target and renamed at the end: a stream cut short leaves no half file.
    partial = target.with_name(target.name + ".partial")
    try:
        handle = partial.open("wb")
    except OSError as exc:
        raise CtlError(f"cannot write {partial}: {exc.strerror or exc}") from None
    try:
        with handle:
            yield handle.write
        os.replace(partial, target)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise


async def verify(ctx: Ctx) -> int:
    show_progress = ctx.args.progress if ctx.args.progress is not None else ctx.out.err_console.is_terminal
    result = await (_verify_streamed(ctx) if show_progress else ctx.api.post("/v1/audit:verify"))
    if not isinstance(result, dict):
        raise CtlError("the gateway answered the verification with something other than a result")
    show(ctx.out, VERIFICATION, ctx.fmt, [result], single=True)
    if result.get("ok") is True:
        return 0
    ctx.out.note(f"error: the audit log's hash chain is broken at event {text(result.get('firstBadId'))}: "
                 f"{text(result.get('message'))}")
    return EXIT_FAILED


async def _verify_streamed(ctx: Ctx) -> Any:
    bar = ctx.out.err_console.is_terminal
    progress = Progress(TextColumn("verifying the audit log"), BarColumn(), MofNCompleteColumn(),
                        console=ctx.out.err_console, transient=True) if bar else None
    task = progress.add_task("verify", total=None) if progress is not None else None
    result: Any = None
    shown: Any = -1
    with progress if progress is not None else contextlib.nullcontext():
        async with ctx.api.stream("POST", "/v1/audit:verifyStream") as response:
            with ctx.api.translate_errors(streaming=True):
                while line := await response.content.readline():
                    try:
                        step = json.loads(line)
                    except ValueError:
                        raise CtlError("the verification stream sent a line that is not JSON") from None
                    if not isinstance(step, dict):
                        continue
                    if progress is not None and task is not None:
                        progress.update(task, completed=step.get("checked"), total=step.get("total"))
                    elif step.get("checked") != shown:
                        shown = step.get("checked")
                        ctx.out.note(f"verified {text(step.get('checked'))}/{text(step.get('total'))} events")
                    if "result" in step:
                        result = step["result"]
    if result is None:
        raise StreamBroken("the verification stream ended without a result: it did not finish")
    return result
