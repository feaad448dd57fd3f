"""kill -9 under load: a child process runs the embedded cluster on a state directory while
this test writes to it over HTTP, and is killed at a random moment (twice: the second run
starts from the state the first kill left). Every write the client saw acknowledged must
be in the state loaded afterwards, and resourceVersions never go backwards."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from service.embedded_cluster.apiserver.builtin_types import CONFIGMAPS
from service.embedded_cluster.controllers import resources as R
from service.embedded_cluster.server import EmbeddedCluster, EmbeddedClusterConfig

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 6
# Small segments: the kill also lands amid compactions (snapshot + segment rotation).
CHILD = """
import asyncio, sys
from pathlib import Path
from service.embedded_cluster.server import EmbeddedCluster, EmbeddedClusterConfig

async def main() -> None:
    cluster = EmbeddedCluster(EmbeddedClusterConfig(state_dir=Path(sys.argv[1]), state_compact_bytes=16384))
    await cluster.start()
    print(cluster.url, cluster.admin_token, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@dataclass
class Acked:
    """What the client was told succeeded."""

    created: dict[str, str] = field(default_factory=dict)    # name -> uid
    patched: dict[str, int] = field(default_factory=dict)    # name -> resourceVersion of the patch
    deleted: set[str] = field(default_factory=set)
    deleting: set[str] = field(default_factory=set)          # a delete was sent (maybe cut off by the kill)
    disks: dict[str, str] = field(default_factory=dict)      # VirtualDisk name -> uid
    max_rv: int = 0

    def saw(self, obj: dict[str, object]) -> int:
        meta = obj["metadata"]
        assert isinstance(meta, dict)
        rv = int(meta["resourceVersion"])
        self.max_rv = max(self.max_rv, rv)
        return rv


async def test_acknowledged_writes_survive_kill_9_under_load(tmp_path: Path) -> None:
    seed = int.from_bytes(os.urandom(4), "big")
    chance = random.Random(seed)
    state, acked = tmp_path / "state", Acked()
    for round_ in ("a", "b"):
        await run_and_kill(state, acked, round_, chance.uniform(0.2, 1.0))
    assert acked.created, "no write was acknowledged before the kill"

    async with EmbeddedCluster(EmbeddedClusterConfig(state_dir=state, run_controllers=False)) as cluster:
        store = cluster.store
        assert store.resource_version >= acked.max_rv, f"seed {seed}"
        for name, uid in acked.created.items():
            obj = store.get(CONFIGMAPS.key, "default", name)
            if name in acked.deleted:
                assert obj is None, f"seed {seed}: {name} was deleted"
                continue
            if obj is None and name in acked.deleting:
                continue   # its delete was in flight: done or not, both are right
            assert obj is not None and obj["metadata"]["uid"] == uid, f"seed {seed}: {name} lost"
            if name in acked.patched:
                assert obj["data"] == {"v": "1"}, f"seed {seed}: {name} lost its patch"
                assert int(obj["metadata"]["resourceVersion"]) >= acked.patched[name], f"seed {seed}"
        for name, uid in acked.disks.items():
            disk = store.get(R.VD, "default", name)
            assert disk is not None and disk["metadata"]["uid"] == uid, f"seed {seed}: disk {name} lost"
        assert store.get(R.VM, "demo", "linux-vm") is not None     # the demo seed, finished if a kill cut it
        new = await store.create(CONFIGMAPS.key, {"metadata": {"name": "after", "namespace": "default"}})
        assert int(new["metadata"]["resourceVersion"]) > acked.max_rv


async def run_and_kill(state: Path, acked: Acked, round_: str, after: float) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(state), cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert child.stdout is not None and child.stderr is not None
        async with asyncio.timeout(30):
            line = (await child.stdout.readline()).decode().split()
        assert len(line) == 2, (await child.stderr.read()).decode()
        url, token = line
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
            workers = [asyncio.create_task(write_until_refused(session, url, acked, f"{round_}{n}"))
                       for n in range(WORKERS)]
            await asyncio.sleep(after)
            child.send_signal(signal.SIGKILL)
            await child.wait()
            await asyncio.gather(*workers)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()


async def write_until_refused(session: aiohttp.ClientSession, url: str, acked: Acked, prefix: str) -> None:
    """Create, patch, delete ConfigMaps (and some VirtualDisks) until the server is gone."""
    configmaps = f"{url}/api/v1/namespaces/default/configmaps"
    disks = f"{url}/apis/virtualization.deckhouse.io/v1alpha2/namespaces/default/virtualdisks"
    with contextlib.suppress(aiohttp.ClientError, ConnectionError):
        for n in range(100_000):
            name = f"{prefix}-{n}"
            async with session.post(configmaps, json={"apiVersion": "v1", "kind": "ConfigMap",
                                                      "metadata": {"name": name}, "data": {"v": "0"}}) as response:
                assert response.status == 201, await response.text()
                body = await response.json()
            acked.saw(body)
            acked.created[name] = body["metadata"]["uid"]
            if n % 2 == 0:
                async with session.patch(f"{configmaps}/{name}", json={"data": {"v": "1"}},
                                         headers={"Content-Type": "application/merge-patch+json"}) as response:
                    assert response.status == 200, await response.text()
                    acked.patched[name] = acked.saw(await response.json())
            if n % 4 == 0:
                acked.deleting.add(name)
                async with session.delete(f"{configmaps}/{name}") as response:
                    assert response.status == 200, await response.text()
                    acked.saw(await response.json())
                acked.deleted.add(name)
            if n % 5 == 0:
                async with session.post(disks, json={
                        "apiVersion": "virtualization.deckhouse.io/v1alpha2", "kind": "VirtualDisk",
                        "metadata": {"name": f"disk-{name}"},
                        "spec": {"persistentVolumeClaim": {"size": "1Gi"}}}) as response:
                    assert response.status == 201, await response.text()
                    body = await response.json()
                acked.saw(body)
                acked.disks[f"disk-{name}"] = body["metadata"]["uid"]
