"""Server-Sent Events (the WHATWG event-stream format) read from an aiohttp response."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp

from service.ctl.errors import ApiError, CtlError

MAX_LINE = 16 << 20   # one data line carries a whole JSON document


@dataclass(frozen=True)
class Event:
    event: str
    data: str
    id: str

    def json(self) -> Any:
        try:
            return json.loads(self.data)
        except ValueError:
            raise CtlError(f"the gateway sent an event {self.event!r} that is not JSON") from None


async def events(response: aiohttp.ClientResponse) -> AsyncIterator[Event]:
    """The events of ``response`` in order; an ``event: error`` raises its problem."""
    async for event in parse(_lines(response)):
        if event.event == "error":
            problem = event.json()
            status = problem.get("status") if isinstance(problem, dict) else None
            raise ApiError(status if isinstance(status, int) else 500,
                           problem if isinstance(problem, dict) else {"detail": event.data})
        yield event


async def _lines(response: aiohttp.ClientResponse) -> AsyncIterator[str]:
    reader = response.content
    while True:
        raw = await reader.readline()
        if not raw:
            return
        if len(raw) > MAX_LINE:
            raise CtlError("the gateway sent an event line too long to be one")
        yield raw.decode("utf-8", errors="replace").rstrip("\r\n")


async def parse(lines: AsyncIterator[str]) -> AsyncIterator[Event]:
    """Fields accumulate until a blank line dispatches them; ``:`` lines are comments
    (keepalives). An event without data is not dispatched, as the spec says."""
    name, last_id = "", ""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield Event(event=name or "message", data="\n".join(data), id=last_id)
            name, data = "", []
            continue
        if line.startswith(":"):
            continue
        key, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if key == "event":
            name = value
        elif key == "data":
            data.append(value)
        elif key == "id" and "\0" not in value:
            last_id = value
