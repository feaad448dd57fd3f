"""What both doors (gRPC and REST) call: ``service.core.gateway.Gateway``'s public methods.

A Protocol rather than the class itself, so each adapter depends on the documented
contract only and can be exercised against any implementation with the same signatures
(the real ``Gateway`` satisfies it structurally; mypy checks that in ``service/app.py``).

Every contract method goes through ``call`` (unary) or ``stream`` (server streaming)
with its ``service.core.contract.Method``: the table entry decides authorization, the
audit action and which use case answers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, TypeVar

from service.core.contract import Method
from service.core.domain import Caller, RequestContext
from service.core.errors import ApiError

Req = TypeVar("Req")
Res = TypeVar("Res")


class GatewayFacade(Protocol):
    async def authenticate(self, authorization: str | None, *, action: str, protocol: str,
                           peer: str = "", request_id: str = "", namespace: str = "") -> Caller: ...

    async def call(self, ctx: RequestContext, method: Method[Req, Res], req: Req) -> Res:
        """Authorize, run and audit one unary contract method; every failure is an ApiError."""

    def stream(self, ctx: RequestContext, method: Method[Req, Res], req: Req) -> AsyncIterator[Res]:
        """A streaming contract method: authorized and audited on the first ``__anext__``
        (which raises ApiError when refused), then every item until the caller stops."""

    async def record_rejection(self, ctx: RequestContext, action: str, error: ApiError, *,
                               namespace: str = "") -> None: ...

    async def check_ready(self) -> dict[str, bool]: ...

    def served_methods(self) -> frozenset[str]:
        """The contract methods a capability answers (the others are UNIMPLEMENTED)."""
        ...
