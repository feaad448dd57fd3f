"""Two gateway replicas on one PostgreSQL database and one cluster, as deploy/gateway.yaml
runs them; a concurrent load spread over both (a client whose call fails on one replica
retries it on the other with the same request id); the replica holding the reconciling
Lease is killed with SIGKILL mid-load. Then:

(a) the audit chain has no fork: VerifyAuditLog passes, the ids are contiguous, every
    prev_hash is the previous row's hash, the chain head is the last row;
(b) no operation row regressed: every version and state the clients saw through the API
    (answers, gets, lists, watch streams) is at most the stored one, a terminal state seen
    is the stored state, one stream never goes back, one (operation, version) never has
    two contents, operation_transitions never leave a terminal state;
(c) the survivor takes over reconciling: the Lease's holderIdentity changes to the
    survivor within the lease duration (plus the election's own lag, see TAKEOVER_BOUND),
    and every operation left unfinished when the leader died is finished afterwards;

and, as in tests/test_chaos.py, nothing acknowledged is lost, no request id has two
operations, no orphan resource, no operation without its audit event. A failure lists
every failed check by letter with the offending operation ids; the logs stay in tmp_path.

The replicas run with ``--lease-duration 6`` (renewed every 6/7.5 s) so the takeover is
quick to observe.
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from bench.chaos import (
    UNFINISHED,
    Endpoint,
    Load,
    LoadConfig,
    audit_chain_problems,
    compute_figures,
    endpoints_for,
    list_written_resources,
    read_database,
    read_lease,
    settle,
    terminal_left,
    version_regressions,
)
from bench.processes import GatewayProcess, embedded_cluster_process
from service.store.models import operations
from tests.support.postgres import PostgresServer
from tests.support.processes import became_leader, fresh_postgres_database, leaders

SHORT_LEASE = 6
LOAD_BEFORE_KILL = 4.0
LOAD_AFTER_KILL = 3.0
MARGIN = 2.0
# Controllers slow enough that some operations are unfinished when the leader dies, fast
# enough that replicas race on the same operation rows (the request path and the reconciler).
STEP_DELAY = 0.15
# The leader dies at a moment with at least this much unfinished work, waiting at most BUSY_LIMIT s for it.
BUSY_AT_KILL = 2
BUSY_LIMIT = 15.0
# Most broken calls fail over to the other replica with the same request id; some are given up.
ABANDON = 0.2


def lease_settings() -> tuple[list[str], float]:
    """The flags that shorten the Lease and the lease duration in effect."""
    return ["--lease-duration", str(SHORT_LEASE)], float(SHORT_LEASE)


def takeover_bound(lease_duration: float) -> float:
    """From the kill to the survivor holding the Lease, at most: the survivor sees the dead
    leader's last renewal up to one retry period late (it polls every duration/7.5 s),
    waits the lease duration from that sighting, and notices expiry on its next poll:
    duration + 2 retry periods, plus a margin."""
    retry = lease_duration / 7.5
    return lease_duration + 2 * retry + MARGIN


async def _wait_for_leader(gateways: list[GatewayProcess], limit: float = 30.0) -> GatewayProcess:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        found = leaders(gateways)
        if len(found) == 1:
            return found[0]
        await asyncio.sleep(0.1)
    raise AssertionError(f"no single leader within {limit} s: {[g.name for g in leaders(gateways)]}")


@pytest.mark.timeout(240)
async def test_kill_the_leader_replica_mid_load(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    server: PostgresServer = request.getfixturevalue("postgres_server")
    lease_flags, lease_duration = lease_settings()
    bound = takeover_bound(lease_duration)
    seed = random.randrange(1, 1 << 30)
    failures: dict[str, list[str]] = {}
    info: list[str] = [f"seed {seed}, lease duration {lease_duration:g} s"
                       + ("" if lease_flags else " (no --lease-duration flag: the default)")]
    async with fresh_postgres_database(server, "replicas") as url:
        with embedded_cluster_process(tmp_path, step_delay=STEP_DELAY) as cluster:
            replicas = []
            for name in ("a", "b"):
                (tmp_path / name).mkdir()
                replicas.append(GatewayProcess(tmp_path / name, cluster.kubeconfig, database_url=url, name=name,
                                               log_level="INFO",
                                               extra_args=["--reconcile-interval", "0.3", *lease_flags]))
            try:
                # One after the other: both would otherwise run the migrations at once.
                for replica in replicas:
                    await replica.start_async()
                leader = await _wait_for_leader(replicas)
                survivor = next(r for r in replicas if r is not leader)
                holder_before = (await read_lease(cluster.kubeconfig)).get("holderIdentity", "")
                assert holder_before, "the Lease has no holder although a replica says it leads"
                async with endpoints_for(replicas) as endpoints:
                    load = Load(endpoints, LoadConfig(clients=4, abandon=ABANDON, seed=seed, run=f"{seed:x}"))
                    load.start()
                    await asyncio.sleep(LOAD_BEFORE_KILL)
                    busy_wait = await _kill_when_busy(leader, url)
                    killed_at, killed_wall = time.monotonic(), datetime.now(UTC)
                    left = (await read_database(url)).unfinished
                    info.append(f"killed {leader.name} (Lease holder {holder_before}) after {LOAD_BEFORE_KILL:g} s of "
                                f"load and {busy_wait:.2f} s waiting for unfinished work; {len(left)} operations "
                                "unfinished at that moment")
                    holder_after, takeover_seconds = await _watch_takeover(cluster.kubeconfig, holder_before, bound,
                                                                           killed_at, load)
                    takeover_wall = datetime.now(UTC)
                    await load.stop()
                    settle_seconds = await settle(url, 45.0)
                    survivor_endpoint: Endpoint = endpoints[replicas.index(survivor)]
                    verification = await survivor_endpoint.verify_audit_log()
                stored = await read_database(url)
                resources = await list_written_resources(cluster.kubeconfig)
            finally:
                for replica in replicas:
                    replica.stop()

    figures = compute_figures(load.ledger, stored, resources, verification)
    info.append(f"{len(stored.operations)} operations, {len(stored.audit)} audit events, "
                f"{len(load.ledger.calls)} calls, {load.ledger.attempts} attempts; settled in {settle_seconds:.1f} s")

    # (a) the audit chain
    chain = audit_chain_problems(stored)
    if not verification.get("ok"):
        chain.insert(0, f"VerifyAuditLog on the survivor: {verification}")
    failures["(a) audit chain forked or broken"] = chain

    # (b) no operation row regressed
    failures["(b) operation versions or states regressed"] = (
        version_regressions(load.ledger, stored) + load.ledger.version_forks() + terminal_left(stored))

    # (c) the survivor takes over
    takeover: list[str] = []
    if takeover_seconds is None:
        takeover.append(f"the Lease still names {holder_after or 'nobody'} {bound:.1f} s after the kill "
                        f"(lease duration {lease_duration:g} s)")
    else:
        info.append(f"Lease holder {holder_before} -> {holder_after} {takeover_seconds:.1f} s after the kill "
                    f"(bound {bound:.1f} s)")
        if not became_leader(survivor):
            takeover.append(f"the Lease changed to {holder_after}, but {survivor.name}'s log never says it leads")
    if not left:
        takeover.append("no operation was unfinished when the leader died: nothing showed the survivor finishing "
                        "the dead replica's work (raise the cluster's step delay)")
    still = [f"{op.id} {op.type} stored {stored.operations[op.id].state}" for op in left
             if op.id in stored.operations and stored.operations[op.id].state not in ("SUCCEEDED", "FAILED",
                                                                                        "CANCELLED")]
    takeover += [f"left unfinished by {leader.name}, never finished by {survivor.name}: {s}" for s in still]
    early = [op.id for op in left if op.id in stored.operations and stored.operations[op.id].end_time is not None
             and stored.operations[op.id].end_time < killed_wall]
    takeover += [f"{op_id}: end_time before the kill, though it was unfinished after it" for op_id in early]
    before_takeover = sum(1 for op in left if (row := stored.operations.get(op.id)) is not None
                          and row.end_time is not None and row.end_time < takeover_wall)
    info.append(f"of the {len(left)} left unfinished: {len(left) - len(still)} finished after the kill, "
                f"{before_takeover} of them before the takeover was seen")
    failures["(c) survivor did not take over"] = takeover

    # nothing lost or unaudited (the chaos figures)
    for name in ("lost operations", "idempotency violations", "orphan resources", "operations without audit",
                 "audit events, unknown op", "unfinished after settle"):
        failures[name] = figures.must_be_zero[name]

    failed = {name: items for name, items in failures.items() if items}
    summary = "\n".join(["", *info, figures.table()])
    print(summary)
    if failed:
        details = "\n".join(f"{name} ({len(items)}):\n" + "\n".join(f"  {item}" for item in items[:8])
                            for name, items in failed.items())
        pytest.fail(f"{len(failed)} checks failed (logs in {tmp_path}):\n{details}\n{summary}", pytrace=False)


async def _kill_when_busy(leader: GatewayProcess, url: str, limit: float = BUSY_LIMIT) -> float:
    """SIGKILL the leader at a moment when at least BUSY_AT_KILL operations are unfinished,
    polling on one connection so the kill follows the sighting within milliseconds (a blind
    kill can land while the four clients are all between operations, and then (c) proves
    nothing). After ``limit`` seconds it kills anyway and (c) reports the idle moment. The
    seconds spent waiting."""
    started = time.monotonic()
    query = sa.select(sa.func.count()).select_from(operations).where(operations.c.state.in_(UNFINISHED))
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            while time.monotonic() - started < limit:
                if int((await conn.execute(query)).scalar_one()) >= BUSY_AT_KILL:
                    break
                await conn.rollback()  # a fresh snapshot for the next count
                await asyncio.sleep(0.02)
            leader.kill()
    finally:
        await engine.dispose()
    return time.monotonic() - started


async def _watch_takeover(kubeconfig: Path, holder_before: str, bound: float, killed_at: float,
                          load: Load) -> tuple[str, float | None]:
    """Poll the Lease until another holder appears (or ``bound`` after the kill); the load
    keeps running meanwhile, at least LOAD_AFTER_KILL seconds. The new holder and the
    seconds from the kill to seeing it (None: not within the bound)."""
    holder, seen = holder_before, None
    while time.monotonic() - killed_at < bound:
        holder = (await read_lease(kubeconfig)).get("holderIdentity", "")
        if holder and holder != holder_before:
            seen = time.monotonic() - killed_at
            break
        await asyncio.sleep(0.2)
    remaining = LOAD_AFTER_KILL - (time.monotonic() - killed_at)
    if remaining > 0 and not load.stopping.is_set():
        await asyncio.sleep(remaining)
    return holder, seen
