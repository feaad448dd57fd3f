"""VerifyAuditLogStream end to end (the whole gateway, a real database, the embedded
cluster): over gRPC and REST the verification reports its progress batch by batch, the
last step carries the result, and a tampered row shows in that result."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import grpc
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from service.api.grpc_gen.dvp.snapshots.v1 import audit_service_pb2, audit_service_pb2_grpc
from service.store import audit as audit_store

pytestmark = pytest.mark.timeout(120)


async def _grpc_steps(server: Any) -> list[audit_service_pb2.VerifyAuditLogProgress]:
    async with grpc.aio.insecure_channel(server.grpc_target) as channel:
        stub = audit_service_pb2_grpc.AuditServiceStub(channel)
        auth = (("authorization", f"Bearer {server.token}"),)
        for _ in range(12):  # each call is audited: enough events for several batches
            await stub.ListAuditEvents(audit_service_pb2.ListAuditEventsRequest(page_size=1), metadata=auth)
        return [step async for step in stub.VerifyAuditLogStream(audit_service_pb2.VerifyAuditLogRequest(),
                                                                  metadata=auth, timeout=30)]


async def _rest_steps(server: Any) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {server.token}"}) as http, \
            http.post(f"{server.rest_url}/v1/audit:verifyStream") as resp:
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("application/x-ndjson")
        return [json.loads(line) for line in (await resp.text()).splitlines()]


async def test_progress_then_the_result_over_both_doors(gateway_server: Any, database_url: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_store, "VERIFY_BATCH", 5)
    steps = await _grpc_steps(gateway_server)
    assert len(steps) >= 3
    assert all(not s.HasField("result") for s in steps[:-1]) and steps[-1].HasField("result")
    checked = [s.checked for s in steps]
    assert checked == sorted(checked) and checked[0] == 5 and steps[-1].result.ok
    assert steps[-1].checked == steps[-1].result.checked == steps[-1].total >= 12

    lines = await _rest_steps(gateway_server)
    assert len(lines) >= 3 and "result" not in lines[0] and lines[-1]["result"]["ok"] is True
    assert [line["checked"] for line in lines] == sorted(line["checked"] for line in lines)

    # Tamper with event 3 behind the gateway's back: the last step names it.
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            postgres = conn.dialect.name == "postgresql"
            if postgres:
                await conn.execute(sa.text("ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_delete"))
            await conn.execute(sa.text("UPDATE audit_events SET actor = 'mallory' WHERE id = 3"))
            if postgres:
                await conn.execute(sa.text("ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_update_delete"))
    finally:
        await engine.dispose()
    lines = await _rest_steps(gateway_server)
    result = lines[-1]["result"]
    assert result["ok"] is False and result["firstBadId"] == 3 and result["checked"] == 2
