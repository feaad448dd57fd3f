"""Output: kubectl-like tables (rich on a terminal, plain aligned text otherwise), JSON,
YAML, names and ids, and kubectl's short ages (5s, 3m, 2h, 4d)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

import yaml
from rich.console import Console
from rich.table import Table
from rich.text import Text

Row = Sequence[str]
GAP = "   "   # kubectl's column gap

# Values worth a color on a terminal (states, phases, audit outcomes).
_STYLES = {
    "SUCCEEDED": "green", "Ready": "green", "SUCCESS": "green", "Completed": "green", "Planned": "cyan",
    "FAILED": "red", "Failed": "red", "ERROR": "red", "DENIED": "red", "Conflict": "red",
    "CANCELLED": "magenta", "Dropped": "magenta",
    "RUNNING": "yellow", "PENDING": "yellow", "InProgress": "yellow", "Pending": "yellow",
}


def parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def age(value: object, now: datetime | None = None) -> str:
    """kubectl's short human duration since ``value`` (an RFC 3339 time); ``<unknown>`` without one."""
    then = parse_time(value)
    if then is None:
        return "<unknown>"
    seconds = int(((now or datetime.now(UTC)) - then).total_seconds())
    if seconds < -1:
        return "<invalid>"
    seconds = max(seconds, 0)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h"
    if seconds < 86400 * 365:
        return f"{seconds // 86400}d"
    return f"{seconds // (86400 * 365)}y"


def short_time(value: object) -> str:
    """An RFC 3339 time to the second, UTC (audit rows, timelines)."""
    parsed = parse_time(value)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if parsed else ""


def text(value: object) -> str:
    """A cell: booleans as kubectl shows them, None as empty, newlines flattened."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return " ".join(str(value).split())


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[dict[str, Any]], str]
    wide_only: bool = False


class Output:
    """Where results go: stdout for what was asked, stderr for notices and errors."""

    def __init__(self, stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.console = Console(file=self.stdout, highlight=False, soft_wrap=True)
        self.err_console = Console(file=self.stderr, highlight=False, soft_wrap=True)
        self.tty = self.console.is_terminal

    # -- plain lines -----------------------------------------------------------------------
    def line(self, value: str = "") -> None:
        self.stdout.write(value + "\n")
        self.stdout.flush()

    def warn(self, message: str) -> None:
        self.stderr.write(f"warning: {' '.join(message.split())}\n")
        self.stderr.flush()

    def note(self, message: str) -> None:
        self.stderr.write(message + "\n")
        self.stderr.flush()

    # -- documents -------------------------------------------------------------------------
    def json(self, doc: Any, *, compact: bool = False) -> None:
        if compact:
            self.line(json.dumps(doc, ensure_ascii=False, separators=(",", ":")))
        else:
            self.line(json.dumps(doc, ensure_ascii=False, indent=2))

    def yaml(self, doc: Any, *, separate: bool = False) -> None:
        body = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, default_flow_style=False)
        self.stdout.write(("---\n" if separate else "") + body)
        self.stdout.flush()

    # -- tables ----------------------------------------------------------------------------
    def table(self, columns: Sequence[Column], items: Sequence[dict[str, Any]], *, wide: bool = False,
              empty: str = "") -> None:
        shown = [c for c in columns if wide or not c.wide_only]
        rows = [[c.cell(item) for c in shown] for item in items]
        if not rows:
            if empty:
                self.note(empty)
            return
        headers = [c.header for c in shown]
        if self.tty:
            self._rich_table(headers, rows)
        else:
            for line in plain_table(headers, rows):
                self.line(line)

    def _rich_table(self, headers: Sequence[str], rows: Sequence[Row]) -> None:
        table = Table(box=None, pad_edge=False, show_edge=False, padding=(0, 3, 0, 0), header_style="bold")
        for header in headers:
            table.add_column(header, no_wrap=True, overflow="fold")
        for row in rows:
            table.add_row(*(Text(cell, style=_STYLES.get(cell, "")) for cell in row))
        # As kubectl: never cut a cell to fit the terminal; a long line wraps instead.
        needed = sum(max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)) + len(GAP) * len(headers)
        terminal = self.console.width
        self.console.width = max(needed, terminal)
        try:
            self.console.print(table)
        finally:
            self.console.width = terminal


def plain_table(headers: Sequence[str], rows: Sequence[Row]) -> list[str]:
    """Left-aligned columns, three spaces apart, no trailing blanks (stable for pipes)."""
    widths = [max(len(header), *(len(row[i]) for row in rows)) for i, header in enumerate(headers)]
    return [pad_row(row, widths) for row in (headers, *rows)]


def pad_row(row: Row, widths: Sequence[int]) -> str:
    cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
    cells.extend(row[len(widths):])
    return GAP.join(cells).rstrip()


class RowStream:
    """Rows of a watch, printed as they come: a header once, columns at least as wide as
    the header (a watch cannot know the widths of rows still to come)."""

    def __init__(self, output: Output, headers: Sequence[str], widths: Sequence[int]) -> None:
        self.output = output
        self.headers = list(headers)
        self.widths = [max(len(h), w) for h, w in zip(headers, widths, strict=True)]
        self.started = False

    def header(self) -> None:
        if not self.started:
            self.started = True
            self.output.line(pad_row(self.headers, self.widths))

    def row(self, row: Row) -> None:
        self.header()
        self.output.line(pad_row(row, self.widths))
