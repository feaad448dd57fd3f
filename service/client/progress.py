"""What a person sees on stderr while downloading: a rich progress bar on a terminal, else
nothing until the one-line summary; notices (retries, restarts) as lines either way."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from service.client import download


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


class _RateColumn(ProgressColumn):
    """The transfer rate in the same binary units as the byte counts (rich's own is decimal)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("?" if speed is None else f"{human_bytes(speed)}/s", style="progress.data.speed")


class Reporter:
    """Progress callback and notice sink for ``download.download``; a context manager."""

    def __init__(self, label: str, *, bar: bool, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._label = label
        self._bar: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        if bar:
            console = Console(file=self._stream, highlight=False)
            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(binary_units=True),
                                 _RateColumn(), TimeRemainingColumn(), console=console, transient=True)

    def __enter__(self) -> Reporter:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()

    def progress(self, event: download.Progress) -> None:
        if self._bar is None:
            return
        description = "checking partial file" if event.phase == "checking" else self._label
        task = self._tasks.get(event.phase)
        if task is None:
            for other in self._tasks.values():
                self._bar.update(other, visible=False)
            # The bar starts where the download resumes; the rate counts only new bytes.
            task = self._bar.add_task(description, total=event.total, completed=event.done)
            self._tasks[event.phase] = task
        self._bar.update(task, completed=event.done, total=event.total)

    def notice(self, message: str) -> None:
        line = f"warning: {message}"
        if self._bar is not None:
            self._bar.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            print(line, file=self._stream, flush=True)


def summary(subject: str, result: download.DownloadResult) -> str:
    """One line: what was written, how big, how fast, and whether it is verified."""
    rate = result.received / result.seconds if result.seconds > 0 else 0.0
    parts = [f"downloaded {subject} to {result.output}: {human_bytes(result.size)} "
             f"({human_bytes(result.allocated_bytes)} on disk)"]
    if result.resumed_from:
        parts.append(f"resumed at {human_bytes(result.resumed_from)} ({result.resumed_from} bytes)")
    if result.restarted:
        parts.append("started over")
    parts.append(f"{human_bytes(result.received)} received in {result.seconds:.1f}s ({human_bytes(rate)}/s)")
    if result.retries:
        parts.append(f"{result.retries} retr{'y' if result.retries == 1 else 'ies'}")
    if result.verified:
        parts.append(f"sha256 {result.sha256} verified ({result.digest_source})")
    else:
        parts.append("not verified (--no-verify)")
    return ", ".join(parts)
