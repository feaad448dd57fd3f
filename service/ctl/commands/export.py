"""``dvpctl export disk|disk-snapshot NAME -o FILE``: ``service.client.download`` with the
same behaviour and exit codes as ``dvp-gateway download`` (docs/download.md)."""

from __future__ import annotations

import asyncio
from typing import cast

from service.client import download, progress
from service.ctl.commands.base import Ctx
from service.ctl.errors import EXIT_FAILED, one_line


async def export(ctx: Ctx) -> int:
    args = ctx.args
    namespace = ctx.namespace()
    subject = f"{args.kind} {namespace}/{args.name}"
    bar = not args.quiet and ctx.out.err_console.is_terminal
    try:
        with progress.Reporter(subject, bar=bar, stream=ctx.out.stderr) as reporter:
            result = await download.download(
                server=ctx.conn.server, token=ctx.conn.token, namespace=namespace,
                kind=cast(download.Kind, args.kind), name=args.name, output=args.file,
                ca_file=ctx.conn.ca_file, ttl=args.ttl, progress=reporter.progress, notice=reporter.notice,
                resume=args.resume, verify=args.verify, retries=args.retries)
    except download.DownloadError as exc:
        ctx.out.note(f"error: {one_line(str(exc))}")
        return exc.exit_code
    except asyncio.CancelledError:   # Ctrl-C: main() answers 130
        ctx.out.note(f"interrupted; run the same command again to resume from {args.file}.part")
        raise
    except OSError as exc:
        ctx.out.note(f"error: {args.file}: {exc.strerror or exc}")
        return EXIT_FAILED
    ctx.out.note(progress.summary(subject, result))
    return 0
