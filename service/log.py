"""Structured logging: one JSON object per line, the request id (and, with tracing on,
the trace id) on every line of a call, and a filter that scrubs bearer tokens and
passwords from anything logged."""

from __future__ import annotations

import contextvars
import json
import logging
import logging.handlers
import re
import sys
from datetime import UTC, datetime
from typing import Any

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
# Set by the call's server span when tracing is on: a log line then leads to its trace.
trace_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("trace_id", default="")

_SECRET_PATTERNS = [
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1[REDACTED]"),
    (re.compile(r"(?i)((?:token|password|secret|authorization)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"), r"\1[REDACTED]"),
    (re.compile(r"(://[^:/@\s]+:)[^@\s]+@"), r"\1[REDACTED]@"),
]


def redact(text: str) -> str:
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        rid = request_id_var.get()
        if rid:
            entry["request_id"] = rid
        if tid := trace_id_var.get():
            entry["trace_id"] = tid
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update({k: redact(str(v)) if isinstance(v, str) else v for k, v in extra.items()})
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ids = " ".join(filter(None, (request_id_var.get(), trace_id_var.get() and f"trace={trace_id_var.get()}")))
        prefix = f"[{ids}] " if ids else ""
        return redact(f"{record.levelname.lower():7} {record.name}: {prefix}{super().format(record)}")


def configure(level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter("%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries that log request details at INFO are kept quiet.
    for noisy in ("aiohttp.access", "sqlalchemy.engine", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class HeldLogs:
    """Log records kept back while the gateway starts: a start that fails then prints its
    one error line alone (the records are dropped, or shown first at DEBUG), a start that
    succeeds writes them as if never held."""

    def __init__(self) -> None:
        self._root = logging.getLogger()
        self._handlers = list(self._root.handlers)
        self._buffer = logging.handlers.MemoryHandler(
            capacity=10_000, flushLevel=logging.CRITICAL + 1, flushOnClose=False,
            target=self._handlers[0] if self._handlers else None)
        self._root.handlers[:] = [self._buffer]

    def release(self, *, write: bool = True) -> None:
        """Put the real handlers back; write the held records, or drop them."""
        if self._root.handlers == [self._buffer]:
            self._root.handlers[:] = self._handlers
        if write and self._buffer.target is not None:
            self._buffer.flush()
        self._buffer.buffer.clear()
        self._buffer.close()


def hold() -> HeldLogs:
    return HeldLogs()
