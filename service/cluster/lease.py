"""Leader election on a ``coordination.k8s.io/v1`` Lease (client-go's algorithm, simplified).

Background work (the operation reconciler, export clean-up) runs in one replica at a
time: the one holding the Lease. Expiry is judged by *our* monotonic clock from the
moment we last saw the record change, never by comparing the holder's timestamps with
our wall clock, so clock skew between replicas cannot hand leadership to two of them.
Every write is a compare-and-swap on resourceVersion: of two candidates, one gets 409.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any, Protocol

from service.cluster.kinds import LEASE
from service.core.errors import ApiError, Code
from service.core.ports import ResourceKind

log = logging.getLogger(__name__)

Obj = dict[str, Any]


class LeaseClient(Protocol):
    async def get(self, kind: ResourceKind, namespace: str, name: str) -> Obj: ...

    async def create(self, kind: ResourceKind, namespace: str, body: Obj) -> Obj: ...

    async def replace(self, kind: ResourceKind, namespace: str, name: str, body: Obj) -> Obj: ...


def _micro_time(moment: datetime) -> str:
    """metav1.MicroTime."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _spec(lease: Obj) -> Obj:
    spec = lease.get("spec")
    return spec if isinstance(spec, dict) else {}


class LeaderElector:
    def __init__(self, client: LeaseClient, namespace: str, name: str, identity: str, lease_seconds: int = 15,
                 *, retry_period: float | None = None) -> None:
        if lease_seconds < 1:
            raise ValueError("lease_seconds must be at least 1")
        self._client = client
        self._namespace = namespace
        self._name = name
        self.identity = identity
        self._lease_seconds = lease_seconds
        self._retry_period = retry_period if retry_period is not None else lease_seconds / 3
        self._leader = asyncio.Event()
        self._follower = asyncio.Event()
        self._follower.set()
        self._observed: tuple[str, str] | None = None  # (holder, renewTime) last seen
        self._observed_at = 0.0
        self._last_renewal = 0.0

    @property
    def is_leader(self) -> bool:
        return self._leader.is_set()

    async def wait_until_leader(self) -> None:
        await self._leader.wait()

    async def wait_until_not_leader(self) -> None:
        """Returns when leadership is lost (at once if we do not lead): stop leader-only work then."""
        await self._follower.wait()

    def _lease_body(self, previous: Obj | None, now: datetime) -> Obj:
        spec = _spec(previous) if previous else {}
        holder = spec.get("holderIdentity")
        transitions = spec.get("leaseTransitions")
        transitions = transitions if isinstance(transitions, int) else 0
        taking_over = holder != self.identity
        body: Obj = {
            "apiVersion": LEASE.api_version,
            "kind": LEASE.kind,
            "metadata": {"name": self._name, "namespace": self._namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self._lease_seconds,
                "acquireTime": _micro_time(now) if taking_over else spec.get("acquireTime", _micro_time(now)),
                "renewTime": _micro_time(now),
                "leaseTransitions": transitions + 1 if taking_over and previous else transitions,
            },
        }
        if previous:
            body["metadata"]["resourceVersion"] = (previous.get("metadata") or {}).get("resourceVersion", "")
        return body

    def _expired(self, lease: Obj) -> bool:
        spec = _spec(lease)
        holder = str(spec.get("holderIdentity") or "")
        if not holder:
            return True
        record = (holder, str(spec.get("renewTime") or ""))
        now = time.monotonic()
        if record != self._observed:
            self._observed, self._observed_at = record, now
        duration = spec.get("leaseDurationSeconds")
        duration = duration if isinstance(duration, int) and duration > 0 else self._lease_seconds
        return now > self._observed_at + duration

    async def try_acquire_or_renew(self) -> bool:
        """One round: True when we hold the Lease afterwards."""
        now = datetime.now(UTC)
        try:
            lease = await self._client.get(LEASE, self._namespace, self._name)
        except ApiError as error:
            if error.code is not Code.NOT_FOUND:
                raise
            try:
                await self._client.create(LEASE, self._namespace, self._lease_body(None, now))
            except ApiError as create_error:
                if create_error.code is Code.ALREADY_EXISTS:
                    return False  # another replica created it first
                raise
            return True
        holder = _spec(lease).get("holderIdentity")
        if holder != self.identity and not self._expired(lease):
            return False
        try:
            await self._client.replace(LEASE, self._namespace, self._name, self._lease_body(lease, now))
        except ApiError as error:
            if error.code is Code.ABORTED:
                return False  # someone else wrote it between our read and our write
            raise
        return True

    def _set_leader(self, leader: bool) -> None:
        if leader and not self.is_leader:
            log.info("became leader of lease %s/%s", self._namespace, self._name)
            self._follower.clear()
            self._leader.set()
        elif not leader and self.is_leader:
            log.warning("lost leadership of lease %s/%s", self._namespace, self._name)
            self._leader.clear()
            self._follower.set()

    async def run(self) -> None:
        """Acquire, then keep renewing until cancelled; releases the Lease on the way out."""
        try:
            while True:
                try:
                    held = await self.try_acquire_or_renew()
                    if held:
                        self._last_renewal = time.monotonic()
                    self._set_leader(held)
                except ApiError as error:
                    log.info("lease %s/%s round failed: %s", self._namespace, self._name, error.reason)
                    # Step down well before the lease can expire and another replica take over.
                    if time.monotonic() - self._last_renewal >= self._lease_seconds * 2 / 3:
                        self._set_leader(False)
                await asyncio.sleep(self._retry_period)
        finally:
            with contextlib.suppress(ApiError, asyncio.CancelledError):
                await asyncio.shield(self.release())

    async def release(self) -> None:
        """Give the Lease up (empty holder) so another replica takes over at once."""
        if not self.is_leader:
            return
        # Stepping down on purpose: not the "lost leadership" warning of _set_leader.
        log.info("releasing lease %s/%s", self._namespace, self._name)
        self._leader.clear()
        self._follower.set()
        lease = await self._client.get(LEASE, self._namespace, self._name)
        if _spec(lease).get("holderIdentity") != self.identity:
            return
        body = self._lease_body(lease, datetime.now(UTC))
        body["spec"]["holderIdentity"] = ""
        body["spec"]["leaseDurationSeconds"] = 1
        await self._client.replace(LEASE, self._namespace, self._name, body)
