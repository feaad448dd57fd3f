"""Follow an operation to its end: the SSE watch, resumed with ``Last-Event-ID`` (after a
GET, in case it ended meanwhile) when the stream drops; a live status line on stderr."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType
from typing import Any

from rich.status import Status

from service.ctl import sse
from service.ctl.errors import EXIT_FAILED, EXIT_OK, ApiError, CtlError
from service.ctl.render import Output, text
from service.ctl.rest import RestClient, StreamBroken, segment
from service.ctl.views import condition_summary, show_operation

Doc = dict[str, Any]
RETRIES = 5                 # reconnects in a row without a new version before giving up
TRANSIENT_STATUSES = frozenset({409, 429, 502, 503, 504})   # 409: WATCH_OVERFLOW (ABORTED)


def describe(op: Doc) -> str:
    words = [f"operation {text(op.get('id'))}", text(op.get("type")), text(op.get("state"))]
    if op.get("phase"):
        words.append(text(op.get("phase")))
    condition = condition_summary(op)
    return " ".join(w for w in words if w) + (f" ({condition})" if condition else "")


class StatusLine:
    """On a terminal one rich status line that changes in place; otherwise a line on
    stderr per change (logs of scripts keep the story)."""

    def __init__(self, output: Output) -> None:
        self.output = output
        self.last = ""
        self._status: Status | None = Status("", console=output.err_console) if output.err_console.is_terminal \
            else None

    def __enter__(self) -> StatusLine:
        if self._status is not None:
            self._status.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._status is not None:
            self._status.stop()

    def update(self, op: Doc) -> None:
        line = describe(op)
        if line == self.last:
            return
        self.last = line
        if self._status is not None:
            self._status.update(line)
        else:
            self.output.note(line)


def _transient(exc: CtlError, contacted: bool) -> bool:
    if isinstance(exc, StreamBroken):
        return True
    if isinstance(exc, ApiError):
        return exc.status in TRANSIENT_STATUSES
    return contacted     # a connection failure once the gateway answered: it may be restarting


async def follow(api: RestClient, op_id: str, on_update: Callable[[Doc], None]) -> Doc:
    """The operation once done; every version seen goes to ``on_update``."""
    path = f"/v1/operations/{segment(op_id)}"
    last: Doc | None = None
    failures, contacted = 0, False
    while True:
        headers = {"Last-Event-ID": str(last["version"])} if last and "version" in last else {}
        try:
            async with api.stream("GET", f"{path}:watch", headers=headers) as response:
                contacted = True
                async for event in sse.events(response):
                    if event.event != "operation":
                        continue
                    op = event.json()
                    if not isinstance(op, dict):
                        raise CtlError(f"the watch of operation {op_id} sent something other than an operation")
                    last, failures = op, 0
                    on_update(op)
                    if op.get("done"):
                        return op
        except CtlError as exc:
            if not _transient(exc, contacted):
                raise
            problem: CtlError | None = exc
        else:
            problem = None    # the stream ended before the operation did: resume it
        failures += 1
        if failures > RETRIES:
            why = f": {problem}" if problem is not None else ""
            raise CtlError(f"lost the watch of operation {op_id} after {RETRIES} reconnects{why}")
        await asyncio.sleep(min(0.2 * 2 ** (failures - 1), 5.0))
        try:
            current = await api.get(path)
        except CtlError as exc:
            if not _transient(exc, contacted):
                raise
            continue
        if isinstance(current, dict):
            last = current
            on_update(current)
            if current.get("done"):
                return current


async def wait_and_show(api: RestClient, output: Output, op: Doc, fmt: str, limit_seconds: float) -> int:
    """``--wait``: follow ``op`` (for at most ``limit_seconds``, 0 for no limit), print its final
    state as ``fmt``; 0 when SUCCEEDED, 1 otherwise with the operation's error."""
    op_id = text(op.get("id"))
    latest = op
    status = StatusLine(output)

    def seen(version: Doc) -> None:
        nonlocal latest
        latest = version
        status.update(version)

    try:
        with status:
            status.update(op)
            if op.get("done"):
                final = op
            else:
                async with asyncio.timeout(limit_seconds if limit_seconds > 0 else None):
                    final = await follow(api, op_id, seen)
    except TimeoutError:
        raise CtlError(f"timed out after {limit_seconds:g}s waiting for operation {op_id} "
                       f"({text(latest.get('state'))} {text(latest.get('phase'))}); it goes on: "
                       f"dvpctl wait operation {op_id}") from None
    show_operation(output, fmt, final)
    return outcome(output, final)


def outcome(output: Output, op: Doc) -> int:
    state = text(op.get("state"))
    if state == "SUCCEEDED":
        return EXIT_OK
    error = op.get("error") if isinstance(op.get("error"), dict) else {}
    assert isinstance(error, dict)
    why = ": ".join(part for part in (text(error.get("reason") or error.get("code")), text(error.get("message")))
                    if part)
    output.note(f"error: operation {text(op.get('id'))} {state or 'ended'}" + (f": {why}" if why else ""))
    return EXIT_FAILED
