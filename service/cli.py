"""``dvp-gateway``: serve | migrate | embedded-cluster | download."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from dataclasses import replace
from pathlib import Path

from service import log
from service.settings import Settings, add_flags, from_args


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dvp-gateway", description="DVP Snapshot Gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gateway (embedded cluster + SQLite when nothing is configured)")
    add_flags(serve)
    migrate = sub.add_parser("migrate", help="apply database migrations and exit")
    migrate.add_argument("--database-url", default=None, help="default: the SQLite file under --data-dir")
    migrate.add_argument("--data-dir", default=None)
    sub.add_parser("embedded-cluster", help="run the embedded cluster alone (see its --help)", add_help=False)
    sub.add_parser("download", help="download a disk or disk snapshot export to a file (see its --help)",
                   add_help=False)
    return parser


async def _serve(settings: Settings) -> int:
    from service.app import GatewayApp
    from service.launcher import embedded_context, ensure_dev_token
    from service.store.engine import safe_url

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings, dev_token = ensure_dev_token(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async with contextlib.AsyncExitStack() as stack:
        cluster_note = ""
        if settings.embedded:
            handle = await stack.enter_async_context(embedded_context(settings))
            settings = replace(settings, kubeconfig=handle.kubeconfig)
            cluster_note = f"embedded cluster at {handle.url} (kubectl --kubeconfig {handle.kubeconfig})"
        app = GatewayApp.from_settings(settings)
        await app.start()
        try:
            # Printed (not logged): this is what a person needs to start using it.
            print(f"gRPC  listening on {settings.grpc_host}:{app.grpc_port}", flush=True)
            print(f"REST  listening on http://{settings.rest_host}:{app.rest_port}/v1 "
                  f"(spec: /openapi.yaml)", flush=True)
            print(f"store {safe_url(settings.effective_database_url)}", flush=True)  # password hidden
            if cluster_note:
                print(cluster_note, flush=True)
            if dev_token:
                print(f"dev bearer token: {dev_token}   (also in {settings.data_dir / 'dev-token'})", flush=True)
            await stop.wait()
        finally:
            await app.stop()
    return 0


async def _migrate(url: str) -> int:
    from service.store.db import migrate

    await migrate(url)
    print("database is at the latest migration")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "embedded-cluster":
        from importlib import import_module

        return int(import_module("service.embedded_cluster.cli").main(argv[1:]))
    if argv and argv[0] == "download":
        # Its own parser: one-line usage errors, and none of the server's imports.
        from service.client.command import main as download_main

        return download_main(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "serve":
        settings = from_args(args)
        log.configure(settings.log_level, settings.log_format)
        return asyncio.run(_serve(settings))
    if args.command == "migrate":
        settings = replace(Settings(), database_url=args.database_url or "")
        if args.data_dir is not None:
            settings = replace(settings, data_dir=Path(args.data_dir))
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        log.configure()
        return asyncio.run(_migrate(settings.effective_database_url))
    return 2


if __name__ == "__main__":
    sys.exit(main())
