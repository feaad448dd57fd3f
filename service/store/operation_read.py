"""Operation rows read cheaply for list pages: JSON columns as their stored text decoded by
orjson (``audit_read.load_json``: json.loads's values), times parsed from the driver's raw
value, instead of SQLAlchemy's per-column processors (a page is 100 rows x 6 JSON and 3
time columns)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row

from service.store.audit_read import load_json
from service.store.models import UtcDateTime, operations

_JSON = frozenset(c.name for c in operations.c if isinstance(c.type, sa.JSON))
_TIMES = frozenset(c.name for c in operations.c if isinstance(c.type, UtcDateTime))
_NAMES = tuple(c.name for c in operations.c)


@functools.cache
def columns(dialect: str) -> tuple[sa.ColumnElement[Any], ...]:
    out: list[sa.ColumnElement[Any]] = []
    for c in operations.c:
        if c.name in _JSON:
            out.append(sa.cast(c, sa.Text()).label(c.name))
        elif c.name in _TIMES:
            raw = sa.String() if dialect == "sqlite" else sa.DateTime(timezone=True)
            out.append(sa.type_coerce(c, raw).label(c.name))
        else:
            out.append(c)
    return tuple(out)


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite: naive UTC text (models.UtcDateTime)
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    parsed: datetime = value
    return parsed.astimezone(UTC)


def decode(row: Row[Any]) -> dict[str, Any]:
    """The mapping ``operation_rows.from_row`` reads, from a row of ``columns``."""
    out = dict(zip(_NAMES, row, strict=True))
    for name in _JSON:
        text = out[name]
        out[name] = None if text is None else load_json(text)
    for name in _TIMES:
        out[name] = _time(out[name])
    return out


def decode_all(rows: Sequence[Row[Any]]) -> list[dict[str, Any]]:
    return [decode(r) for r in rows]
