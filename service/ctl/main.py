"""``dvpctl`` entry point: parse, resolve the connection, run the command, map every
outcome to one line and an exit code (docs/cli.md). Never a traceback."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

    from service.ctl.connection import Connection
    from service.ctl.render import Output

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


def main(argv: list[str] | None = None) -> int:
    # Everything is imported inside: a Ctrl-C while importing is exit 130 too.
    try:
        return _main(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _main(argv: list[str]) -> int:
    import asyncio
    import os

    from service.ctl import parser
    from service.ctl.connection import resolve
    from service.ctl.errors import CtlError, one_line
    from service.ctl.render import Output

    out = Output()
    try:
        args = parser.build().parse_args(argv)
    except SystemExit as exc:   # --help (0) or a usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        connection = resolve(args, os.environ)
        return asyncio.run(_run(args, connection, out))
    except CtlError as exc:
        out.note(f"error: {exc}")
        for detail in exc.details:
            out.note(f"  {detail}")
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`dvpctl ... | head`): stop quietly.
        _silence_stdout()
        return EXIT_FAILED
    except Exception as exc:  # a bug still gets one line, not a traceback
        out.note(f"error: unexpected {type(exc).__name__}: {one_line(str(exc))}")
        return EXIT_FAILED


async def _run(args: argparse.Namespace, connection: Connection, out: Output) -> int:
    from service.ctl.commands.base import Ctx
    from service.ctl.rest import RestClient

    async with RestClient(connection) as api:
        code = await args.handler(Ctx(args=args, conn=connection, api=api, out=out))
    return int(code)


def _silence_stdout() -> None:
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
