"""Index-bound SQL for the audit log's read side: filters, time ranges, prefix ranges.

Pages are ordered by id (the chain's order). A time range alone cannot bound an id scan,
so the filter also bounds the id: ``id >= (first id whose time >= since)`` and ``id <=
(last id whose time < until)``, each one seek in the ``(time, id)`` index. Those bounds
are exact only where time never steps back along the ids (clocks step back; replicas
disagree), so ``TimeOrder`` remembers where it did: the last id ``K`` whose time is below
its predecessor's, the highest time ``M`` up to it, and the id ``C`` checked through. A
bound is used only when the statement itself can prove it exact (else the bound is 0 or
the maximum id, i.e. no bound, and the time filter alone stays correct):

- lower bound ``a`` (first row by ``(time, id)`` with ``time >= since``): every row with
  ``time >= since`` and a smaller id would have ``time > time(a)``, so there is none when
  ``a > K``, ``M <= time(a)`` and no step back after ``C``;
- upper bound ``b`` (last row by ``(time, id)`` with ``time < until``): a row with
  ``time < until`` and a larger id would have ``time < time(b)``: none when ``b >= K``
  and no step back after ``C``.

"No step back after C" is a subquery over the rows appended since the last check, in the
same statement (same snapshot as the page), so a concurrent append is covered too.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time as monotonic_clock
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from service.store.models import UtcDateTime, audit_events

log = logging.getLogger(__name__)

MAX_EVENT_ID = 2**63 - 1
# Re-check the time order at most this often (each check scans only the new rows; the
# statement checks the rows appended since, so staleness costs time, never correctness).
REFRESH_SECONDS = 5.0
_MAX_CODE_POINT = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)


def prefix_upper_bound(prefix: str) -> str | None:
    """The least string above every string starting with ``prefix`` in code point order
    (None: there is none). With ``lo <= s < hi`` the prefix match is an index range."""
    chars = list(prefix)
    while chars and ord(chars[-1]) == _MAX_CODE_POINT:
        chars.pop()
    if not chars:
        return None
    nxt = ord(chars[-1]) + 1
    if nxt in _SURROGATES:
        nxt = _SURROGATES.stop  # no stored text holds a lone surrogate
    chars[-1] = chr(nxt)
    return "".join(chars)


def prefix_clause(column: sa.ColumnElement[str], prefix: str, dialect: str) -> sa.ColumnElement[bool]:
    """``column`` starts with ``prefix``, as a range: LIKE never uses an index here
    (PostgreSQL: a non-C collation or a generic plan; escaping defeats SQLite's LIKE
    optimization). Both backends compare code points: SQLite's BINARY collation is
    UTF-8 memcmp, PostgreSQL's ``~>=~`` operators (text_pattern_ops, the index's opclass)
    too, so the range is exact and %, _ and backslash are plain characters."""
    upper = prefix_upper_bound(prefix)
    if dialect == "postgresql":
        lo = column.op("~>=~", is_comparison=True)(sa.literal(prefix, sa.Text()))
        if upper is None:
            return lo
        return sa.and_(lo, column.op("~<~", is_comparison=True)(sa.literal(upper, sa.Text())))
    if upper is None:
        return column >= prefix
    return sa.and_(column >= prefix, column < upper)


@dataclass
class _Checked:
    through: int = 0                 # every id <= through has been checked
    last_step_back: int = 0          # K: the last id whose time is below its predecessor's
    max_time_to_step: datetime | None = None  # M: the highest time among ids <= K
    at: float = -REFRESH_SECONDS


class TimeOrder:
    """Where time steps back along the ids (see the module docstring); one per repository.

    The check runs in the background, never in a caller's request: the first one reads the
    whole log once (seconds at 10M events), later ones only the rows appended since. Until
    the first has finished, time ranges are read without id bounds (correct, slower)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._checked = _Checked()
        self._known = False  # the first check has finished
        self._task: asyncio.Task[None] | None = None

    def refresh_soon(self) -> None:
        """Start a check if the last one is older than REFRESH_SECONDS (and none runs)."""
        if self._task is not None and not self._task.done():
            return
        if monotonic_clock.monotonic() - self._checked.at < REFRESH_SECONDS:
            return
        self._task = asyncio.get_running_loop().create_task(self._refresh(), name="audit-time-order")

    async def checked(self) -> None:
        """Run a check now and wait for it (tests, benchmarks)."""
        if self._task is not None and not self._task.done():
            await asyncio.wait({self._task})
        self._checked.at = -REFRESH_SECONDS
        await self._refresh()

    async def _refresh(self) -> None:
        try:
            async with self._engine.connect() as conn:
                await self._scan(conn)
            self._known = True
        except Exception:  # the next request starts another; until then the bounds are older
            log.warning("audit time order check failed", exc_info=True)

    async def _scan(self, conn: AsyncConnection) -> None:
        checked = self._checked
        e = audit_events.c
        # Adjacent pairs from the last checked id on: one pass over the new rows.
        window = sa.select(e.id, e.time, sa.func.lag(e.time).over(order_by=e.id).label("prev")) \
            .where(e.id >= checked.through).subquery()
        query = sa.select(sa.func.max(window.c.id),
                          sa.func.max(sa.case((window.c.time < window.c.prev, window.c.id))))
        highest, step = (await conn.execute(query)).one()
        now = monotonic_clock.monotonic()
        if highest is None:
            checked.at = now
            return
        if step is not None and step > checked.last_step_back:
            top = (await conn.execute(sa.select(sa.func.max(e.time)).where(e.id <= step))).scalar_one()
            checked = _Checked(checked.through, int(step), top)
        checked.through, checked.at = int(highest), now
        self._checked = checked

    def clauses(self, since: datetime | None, until: datetime | None, after_id: int,
                dialect: str) -> tuple[list[sa.ColumnElement[bool]], dict[str, Any]]:
        """Id bounds for a time range, ``id > after_id`` included (the time filters
        themselves are added separately), and the values of their parameters."""
        checked = self._checked
        if not self._known:
            return [audit_events.c.id > after_id], {}
        values: dict[str, Any] = {"tb_after": after_id, "tb_through": checked.through,
                                  "tb_step": checked.last_step_back}
        if since is not None:
            values["tb_since"] = since
        if until is not None:
            values["tb_until"] = until
        if checked.max_time_to_step is not None:
            values["tb_step_time"] = checked.max_time_to_step
        shape = _bounds(since is not None, until is not None, checked.max_time_to_step is not None, dialect)
        return list(shape), values


@functools.cache
def _bounds(since: bool, until: bool, step_time: bool, dialect: str) -> tuple[sa.ColumnElement[bool], ...]:
    """The bound clauses for one shape of query, built once (aliases are costly to build)
    with named parameters (``TimeOrder.clauses`` gives their values)."""
    e = audit_events.c
    # No step back among the rows not yet checked (evaluated in the page's snapshot; by
    # order, not id + 1, so a gap in the ids cannot hide one).
    tail = audit_events.alias("tail")
    pairs = sa.select(tail.c.time, sa.func.lag(tail.c.time).over(order_by=tail.c.id).label("prev")) \
        .where(tail.c.id >= sa.bindparam("tb_through", type_=sa.BigInteger())).subquery("pairs")
    fresh = ~sa.exists().where(pairs.c.time < pairs.c.prev)
    step = sa.bindparam("tb_step", type_=sa.BigInteger())
    after = sa.bindparam("tb_after", type_=sa.BigInteger())
    bounds: list[sa.ColumnElement[bool]] = []
    if since:
        seek = audit_events.alias("first_since")
        exact = sa.and_(fresh, seek.c.id > step)
        if step_time:
            exact = sa.and_(exact, seek.c.time >= sa.bindparam("tb_step_time", type_=UtcDateTime()))
        lower = (sa.select(sa.case((exact, seek.c.id), else_=0))
                 .where(seek.c.time >= sa.bindparam("tb_since", type_=UtcDateTime()))
                 .order_by(seek.c.time, seek.c.id).limit(1).scalar_subquery())
        # No row at or after since: NULL, and id >= NULL matches nothing (correct).
        if dialect == "sqlite":
            # SQLite starts an index range at one lower bound only: give it the higher
            # (its two-argument max() is NULL when either is, as wanted here).
            bounds.append(e.id >= sa.func.max(lower, after + 1))
        else:
            # PostgreSQL's btree keeps the tighter of two bounds on one column.
            bounds += [e.id >= lower, e.id > after]
    else:
        bounds.append(e.id > after)
    if until:
        seek = audit_events.alias("last_until")
        exact = sa.and_(fresh, seek.c.id >= step)
        upper = (sa.select(sa.case((exact, seek.c.id), else_=MAX_EVENT_ID))
                 .where(seek.c.time < sa.bindparam("tb_until", type_=UtcDateTime()))
                 .order_by(seek.c.time.desc(), seek.c.id.desc()).limit(1).scalar_subquery())
        bounds.append(e.id <= upper)
    return tuple(bounds)
