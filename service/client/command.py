"""``dvp-gateway download``: the command line over ``download.download``.

Exit codes: 0 downloaded (and verified unless --no-verify), 1 failed, 2 usage,
3 checksum mismatch, 130 interrupted (Ctrl-C). Every error is one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, cast
from urllib.parse import urlsplit

from service.settings import Settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_MISMATCH, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
ENV_URL = "DVP_GATEWAY_URL"
ENV_TOKEN = "DVP_GATEWAY_TOKEN"


def default_server() -> str:
    # The REST listener's defaults of `dvp-gateway serve`.
    settings = Settings()
    return f"http://{settings.rest_host}:{settings.rest_port}"


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage block) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {message} (see {self.prog} --help)\n")


def parser(prog: str = "dvp-gateway download") -> argparse.ArgumentParser:
    p = _Parser(prog=prog, description="Download the export of a disk or disk snapshot to a file: resumable, "
                "sparse (zero blocks stay holes) and verified against the gateway's SHA-256.",
                epilog="exit codes: 0 done, 1 failed, 2 usage, 3 checksum mismatch, 130 interrupted. "
                "Rerun the same command to resume an interrupted download.")
    p.add_argument("kind", choices=["disk", "disk-snapshot"], help="what to export")
    p.add_argument("name", metavar="NAME", help="the VirtualDisk or VirtualDiskSnapshot")
    p.add_argument("-n", "--namespace", required=True, metavar="NS")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="FILE",
                   help="where to write the image (FILE.part and FILE.part.json while downloading)")
    p.add_argument("--server", default=None, metavar="URL",
                   help=f"the gateway's REST URL (env {ENV_URL}; default {default_server()})")
    token = p.add_mutually_exclusive_group()
    token.add_argument("--token", default=None, help=f"bearer token (prefer env {ENV_TOKEN} or --token-file)")
    token.add_argument("--token-file", type=Path, default=None, metavar="PATH",
                       help="file holding the bearer token (e.g. var/dev-token of `dvp-gateway serve`)")
    p.add_argument("--ca-file", type=Path, default=None, metavar="PEM", help="CA bundle to trust for https")
    p.add_argument("--ttl", default=None, help="how long the export lives without access, e.g. 120s")
    p.add_argument("--no-resume", dest="resume", action="store_false",
                   help="discard a partial download and start over")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="do not check the SHA-256 (a download without the gateway's digest then succeeds)")
    p.add_argument("--retries", type=_count, default=5, metavar="N",
                   help="retries of a dropped connection or a busy gateway (429/503) without progress (default 5)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, only the final line")
    return p


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


@dataclass(frozen=True)
class Invocation:
    server: str
    token: str


def resolve(args: argparse.Namespace, env: dict[str, str]) -> Invocation:
    """Server and token from flags, then the environment; UsageError says what is missing."""
    from service.client.wire import is_duration

    server = (args.server or env.get(ENV_URL) or default_server()).rstrip("/")
    parts = urlsplit(server)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"--server: expected http(s)://HOST:PORT, got {server!r}")
    if args.ttl is not None and not is_duration(args.ttl):
        raise UsageError(f"--ttl: expected seconds like 120s, got {args.ttl!r}")
    if args.token is not None:
        token = args.token
    elif args.token_file is not None:
        try:
            token = args.token_file.read_text().strip()
        except OSError as exc:
            raise UsageError(f"--token-file: cannot read {args.token_file}: {exc.strerror}") from None
    else:
        token = env.get(ENV_TOKEN, "")
    if not token.strip() or any(c in token for c in "\r\n"):
        raise UsageError(f"no bearer token: give --token-file PATH or --token, or set {ENV_TOKEN}")
    return Invocation(server, token.strip())


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        invocation = resolve(args, dict(os.environ))
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from service.client import download, progress

    subject = f"{args.kind} {args.namespace}/{args.name}"
    bar = not args.quiet and sys.stderr.isatty()
    try:
        with progress.Reporter(subject, bar=bar) as reporter:
            result = asyncio.run(download.download(
                server=invocation.server, token=invocation.token, namespace=args.namespace,
                kind=cast(download.Kind, args.kind), name=args.name, output=args.output, ca_file=args.ca_file,
                ttl=args.ttl, progress=reporter.progress, notice=reporter.notice, resume=args.resume,
                verify=args.verify, retries=args.retries))
    except download.DownloadError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # a bug still gets one line, not a traceback
        print(f"error: unexpected {type(exc).__name__}: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"error: interrupted; run the same command again to resume from {args.output}.part",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    print(progress.summary(subject, result), file=sys.stderr)
    return EXIT_OK
