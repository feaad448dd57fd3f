"""``dvp-gateway``: serve | migrate | embedded-cluster | download.

A start that cannot succeed ends with one line on stderr, ``dvp-gateway: <what>``, and
exit code 2 (a refused flag or env value) or 1 (what a value points to: a file, a port,
the database), never a traceback; whatever had started is stopped first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
import tempfile
import textwrap
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import NoReturn, TypeVar

from service import log
from service.settings import (
    Settings,
    StartupError,
    add_flags,
    cluster_flag,
    from_args,
    load_policy_file,
    load_token_file,
    os_reason,
    server_ssl_context,
)

T = TypeVar("T")
PROG = "dvp-gateway"
_MIGRATE_SETTINGS = ("data_dir", "database_url")


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line usage error (its default prints the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: {message} (see {self.prog} --help)\n")


class _HelpFormatter(argparse.HelpFormatter):
    """Help lines wrapped between words only: "--tls-key" is never split at its hyphen."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="DVP Snapshot Gateway")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve", help="run the gateway (embedded cluster + SQLite when nothing is configured)",
        formatter_class=_HelpFormatter,
        description="Run the gateway: gRPC and REST listeners over a cluster and a database. Every flag "
                    "can also be set with the env var named in its help; a flag wins over its env var.")
    add_flags(serve)
    migrate = sub.add_parser("migrate", help="apply database migrations and exit", formatter_class=_HelpFormatter,
                             description="Apply the database migrations (also done at every start) and exit.")
    add_flags(migrate, names=_MIGRATE_SETTINGS)
    sub.add_parser("embedded-cluster", help="run the embedded cluster alone (see its --help)", add_help=False)
    sub.add_parser("download", help="download a disk or disk snapshot export to a file (see its --help)",
                   add_help=False)
    return parser


def _prepare_data_dir(path: Path) -> None:
    """Created if missing, and proven writable now rather than by a later, vaguer error."""
    if path.exists() and not path.is_dir():
        raise StartupError(f"--data-dir: {path} is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise StartupError(f"--data-dir: cannot write to {path}: {os_reason(exc)}") from None


def _preflight(settings: Settings) -> None:
    """What can be checked without the server's (slow to import) modules, before anything
    starts: the data dir, the TLS files, the token and policy files, the kubeconfig."""
    from service.cluster.config import check_in_cluster, check_kubeconfig
    from service.core.errors import ApiError

    _prepare_data_dir(settings.data_dir)
    server_ssl_context(settings)
    if settings.auth == "static":
        if settings.token_file is not None:   # else the embedded mode makes one
            load_token_file(settings)
        load_policy_file(settings)
    try:
        if settings.in_cluster:
            check_in_cluster()
        elif settings.kubeconfig is not None:
            check_kubeconfig(settings.kubeconfig, settings.kube_context or None)
    except ApiError as exc:
        raise StartupError(f"{cluster_flag(settings)}: {exc.message}") from None


async def _start(settings: Settings, stack: contextlib.AsyncExitStack) -> list[str]:
    """Start everything (each part's stop pushed on ``stack``); the banner's lines."""
    _preflight(settings)
    from service.launcher import ensure_dev_token

    try:
        settings, dev_token = ensure_dev_token(settings)
    except OSError as exc:
        raise StartupError(f"--data-dir: cannot write the dev token to {settings.data_dir}: "
                           f"{os_reason(exc)}") from None

    from service.app import GatewayApp
    from service.launcher import embedded_context
    from service.store.engine import safe_url

    app = GatewayApp.from_settings(settings)   # reads the dev token file, if one was made
    cluster_note = ""
    if settings.embedded:
        try:
            handle = await stack.enter_async_context(embedded_context(settings))
        except OSError as exc:
            if settings.embedded_port == 0:
                raise StartupError(f"the embedded cluster did not start: {_describe(exc)}") from None
            raise StartupError(f"cannot listen on 127.0.0.1:{settings.embedded_port} (embedded cluster, "
                               f"--embedded-port): {os_reason(exc)}") from None
        except Exception as exc:   # e.g. its StateError: a damaged or locked state directory
            raise StartupError(f"the embedded cluster did not start: {_describe(exc)}") from None
        app.settings = settings = replace(settings, kubeconfig=handle.kubeconfig)
        cluster_note = f"embedded cluster at {handle.url} (kubectl --kubeconfig {handle.kubeconfig})"
    await app.start()   # stops what it started if it fails
    stack.push_async_callback(app.stop)
    # Printed (not logged): this is what a person needs to start using it.
    scheme, tls = ("https", "TLS") if settings.tls_enabled else ("http", "plaintext")
    if settings.tls_client_ca is not None:
        tls = "TLS, client certificates required"
    lines = [f"gRPC  listening on {settings.grpc_host}:{app.grpc_port} ({tls})",
             f"REST  listening on {scheme}://{settings.rest_host}:{app.rest_port}/v1 (spec: /openapi.yaml)",
             *([f"console at {scheme}://{settings.rest_host}:{app.rest_port}/console/"] if settings.console else []),
             f"store {safe_url(settings.effective_database_url)}"]   # password hidden
    if settings.metrics:
        lines.append(f"metrics at http://{_url_host(settings.metrics_host)}:{app.metrics_port}/metrics")
    if settings.tracing:
        lines.append(f"traces to {settings.otlp_endpoint or 'the OTLP exporter default (OTEL_EXPORTER_OTLP_*)'}")
    if cluster_note:
        lines.append(cluster_note)
    demo = "demo" if cluster_note and settings.embedded_seed_demo else ""
    lines.append(f"client config {_write_client_config(settings, app.grpc_port, app.rest_port, demo)} "
                 "(dvpctl and service.client read it)")
    if dev_token:
        lines.append(f"dev bearer token: {dev_token}   (also in {settings.data_dir / 'dev-token'})")
    return lines


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _write_client_config(settings: Settings, grpc_port: int, rest_port: int, namespace: str) -> Path:
    from service.client.config import ClientConfig, connect_host, write_config

    scheme = "https" if settings.tls_enabled else "http"
    dev_token = settings.data_dir / "dev-token"
    config = ClientConfig(
        rest=f"{scheme}://{connect_host(settings.rest_host)}:{rest_port}",
        grpc=f"{connect_host(settings.grpc_host)}:{grpc_port}", tls=settings.tls_enabled,
        token_file=dev_token if settings.auth == "static" and dev_token.is_file() else None,
        namespace=namespace)
    try:
        return write_config(settings.data_dir / "client.yaml", config)
    except OSError as exc:
        raise StartupError(f"--data-dir: cannot write client.yaml to {settings.data_dir}: {os_reason(exc)}") from None


async def _serve(settings: Settings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async with contextlib.AsyncExitStack() as stack:
        banner = await _starting(lambda: _start(settings, stack), stack)
        for line in banner:
            print(line, flush=True)
        _settle_after_start()
        if os.environ.get(HEAP_REPORT_ENV):
            loop.add_signal_handler(signal.SIGUSR1, _write_heap_report, os.environ[HEAP_REPORT_ENV])
        await stop.wait()
    return 0


def _settle_after_start() -> None:
    """Once serving (once per process, not per GatewayApp: tests start many): collect the
    start-up's cyclic garbage, then move what survives (modules, classes, the long-lived
    objects of start-up) out of the collector's reach, so later full collections walk
    only what the traffic allocates: shorter pauses. For RSS it is within noise (see
    bench/bench_memory.py)."""
    gc.collect()
    gc.freeze()


# A debugging aid for bench/bench_memory.py: with this env var set (and tracemalloc
# tracing, e.g. PYTHONTRACEMALLOC=1), SIGUSR1 writes the Python heap's live allocations,
# grouped by the file that made them, to the file it names.
HEAP_REPORT_ENV = "DVP_GATEWAY_HEAP_REPORT"


def _write_heap_report(path: str) -> None:
    import tracemalloc

    if not tracemalloc.is_tracing():
        Path(path).write_text("tracemalloc is not tracing (set PYTHONTRACEMALLOC=1)\n")
        return
    gc.collect()
    stats = tracemalloc.take_snapshot().statistics("filename")
    lines = [f"{stat.size}\t{stat.count}\t{stat.traceback[0].filename}" for stat in stats]
    traced, peak = tracemalloc.get_traced_memory()
    tmp = Path(path + ".tmp")
    tmp.write_text(f"# traced={traced} peak={peak}\n" + "\n".join(lines) + "\n")
    tmp.replace(path)


async def _starting(start: Callable[[], Awaitable[T]], stack: contextlib.AsyncExitStack) -> T:
    """Run ``start`` with the logs held; on failure stop what started, then raise one
    StartupError (an unexpected exception too: its traceback is logged at DEBUG only)."""
    held = log.hold()
    try:
        result = await start()
    except BaseException as exc:
        failure = exc
        if not isinstance(exc, (StartupError, asyncio.CancelledError, KeyboardInterrupt, SystemExit)):
            logging.getLogger("dvp.gateway").debug("start-up failed", exc_info=True)
            failure = StartupError(f"start-up failed: {_describe(exc)}")
        try:
            await stack.aclose()
        except Exception:
            logging.getLogger("dvp.gateway").debug("stopping after a failed start failed", exc_info=True)
        finally:
            held.release(write=logging.getLogger().isEnabledFor(logging.DEBUG))
        raise failure from None
    held.release()
    return result


def _describe(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return log.redact(f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__)


async def _migrate(url: str) -> int:
    from service.app import open_database

    async with contextlib.AsyncExitStack() as stack:
        database = await _starting(lambda: open_database(url), stack)
        await database.close()
    print("database is at the latest migration")
    return 0


def _fail(exc: StartupError) -> int:
    # One line whatever the message holds (a driver's reason can span several).
    text = " ".join(str(exc).split("\n")).strip() or type(exc).__name__
    print(f"{PROG}: {text}", file=sys.stderr, flush=True)
    return exc.exit_code


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (Linux, macOS): measured in bench/bench_create.py;
    asyncio's own loop elsewhere, or when DVP_EVENT_LOOP=asyncio asks for it."""
    if os.environ.get("DVP_EVENT_LOOP", "") == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


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
    try:
        if args.command == "serve":
            settings = from_args(args)
            log.configure(settings.log_level, settings.log_format)
            with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
                return runner.run(_serve(settings))
        if args.command == "migrate":
            settings = from_args(args, names=_MIGRATE_SETTINGS)
            log.configure()
            _prepare_data_dir(settings.data_dir)
            return asyncio.run(_migrate(settings.effective_database_url))
    except StartupError as exc:
        return _fail(exc)
    return 2


if __name__ == "__main__":
    sys.exit(main())
