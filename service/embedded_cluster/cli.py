"""``python -m service.embedded_cluster serve``: run the embedded cluster alone."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from service.embedded_cluster.controllers.settings import DEFAULT_EXPORT_CHUNK
from service.embedded_cluster.server import EmbeddedCluster, EmbeddedClusterConfig, StateError


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m service.embedded_cluster",
                                     description="A Kubernetes API server with the virtualization platform's "
                                                 "resources and simulated controllers.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve until SIGINT/SIGTERM")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0, help="0 picks a free port")
    # HTTPS by default: kubectl (client-go) will not send a bearer token over plain HTTP.
    serve.add_argument("--tls", action=argparse.BooleanOptionalAction, default=True,
                       help="serve HTTPS with a generated CA (default; --no-tls for plain HTTP)")
    serve.add_argument("--step-delay", type=float, default=1.0, help="seconds per simulated controller step")
    serve.add_argument("--no-seed", action="store_true", help="do not create the demo namespace and objects")
    serve.add_argument("--no-export-module", action="store_true",
                       help="serve without the DataExport module (no dataexports resource, no exporter)")
    serve.add_argument("--export-chunk", type=int, default=DEFAULT_EXPORT_CHUNK,
                       help="bytes per write of the DataExport exporter (default %(default)s)")
    serve.add_argument("--policy", type=Path, help="YAML file with users, tokens and rules")
    serve.add_argument("--kubeconfig-out", type=Path, default=Path("embedded-kubeconfig.yaml"))
    serve.add_argument("--admin-token-file", type=Path,
                       help="read the admin token from this file (created with a new token when missing)")
    serve.add_argument("--state-dir", type=Path,
                       help="keep objects, CA, admin token and port here across restarts (default: in memory)")
    return parser


def _admin_token(path: Path | None) -> str | None:
    if path is None or not path.exists():
        return None
    token = path.read_text().strip()
    if len(token) < 16:
        raise SystemExit(f"{path}: the admin token must be at least 16 characters")
    return token


def config_of(args: argparse.Namespace) -> EmbeddedClusterConfig:
    return EmbeddedClusterConfig(host=args.host, port=args.port, tls=args.tls, step_delay=args.step_delay,
                                 seed_demo=not args.no_seed, admin_token=_admin_token(args.admin_token_file),
                                 policy_path=args.policy, export_module=not args.no_export_module,
                                 export_chunk=args.export_chunk, state_dir=args.state_dir)


async def _serve(args: argparse.Namespace) -> int:
    cluster = EmbeddedCluster(config_of(args))
    await cluster.start()
    try:
        if args.admin_token_file is not None and not args.admin_token_file.exists():
            args.admin_token_file.touch(mode=0o600)
            args.admin_token_file.write_text(cluster.admin_token + "\n")
        kubeconfig = cluster.write_kubeconfig(args.kubeconfig_out.resolve())
        print(f"embedded cluster serving at {cluster.url}", flush=True)
        print(f"kubeconfig written to {kubeconfig}", flush=True)
        print(f"try: kubectl --kubeconfig {kubeconfig} get virtualmachines -n demo", flush=True)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stopping.set)
        await stopping.wait()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    finally:
        await cluster.stop()
    print("embedded cluster stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return asyncio.run(_serve(args))
    except StateError as error:
        print(f"error: embedded cluster state: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
