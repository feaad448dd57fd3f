"""Calls of the contract a later release implements: routed, audited, answered 501.

The route's name is the contract method's name; the call goes through the facade like
every other (with no request: the body is not read), so the core audits it under that
name and answers UNIMPLEMENTED.
"""

from __future__ import annotations

import contextlib
from typing import Any

from aiohttp import web

from service.api.rest.context import context, gateway
from service.core import contract, errors


async def unimplemented(request: web.Request) -> web.StreamResponse:
    method: contract.Method[Any, Any] = contract.BY_NAME[request.match_info.route.name or ""]
    if not method.streaming:
        await gateway(request).call(context(request), method, None)
    else:
        items = gateway(request).stream(context(request), method, None)
        try:
            with contextlib.suppress(StopAsyncIteration):
                await anext(items)  # raises the core's UNIMPLEMENTED
        finally:
            close = getattr(items, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()
    # Only reached should the core answer a call this door cannot serve yet.
    raise errors.unimplemented(method.name)
