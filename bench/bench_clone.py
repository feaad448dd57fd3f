#!/usr/bin/env python3
"""Clone planning cost: the gateway's CloneVirtualMachine (DryRun, gRPC and REST) against its
baseline, a direct VirtualMachineOperation Clone DryRun create on the same embedded cluster.

The gateway does more per call than the create: authenticate, authorize, audit, check the
options, read the VM, plan the whole name map and check every new name against the
cluster (one GET per renamed object) and against clones in flight (one list of
VirtualMachineOperations and one of VirtualMachineSnapshotOperations), record the
operation write-ahead, then create the same VirtualMachineOperation.

    .venv/bin/python bench/bench_clone.py [--n 100] [--concurrency 4] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

import aiohttp
import grpc
from kubernetes_asyncio import client as kclient
from kubernetes_asyncio import config as kconfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_create import _report, _run
from bench.processes import stack
from service.api.grpc_gen.dvp.snapshots.v1 import clone_service_pb2, clone_service_pb2_grpc, common_pb2

NS = "demo"
VM = "stopped-vm"  # the demo's stopped VM: a clone's precondition


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--database-url", default="", help="default: a SQLite file in a temp dir")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, stack(Path(tmp), database_url=args.database_url) as running:
        print(f"embedded cluster and gateway as separate processes, step delay 0; database "
              f"{(args.database_url or 'sqlite').split(':')[0]}; n={args.n} concurrency={args.concurrency}; "
              "DryRun clones of one VM with one disk")
        cfg = kclient.Configuration()
        await kconfig.load_kube_config(config_file=str(running.kubeconfig), client_configuration=cfg)
        async with kclient.ApiClient(cfg) as api:
            objects = kclient.CustomObjectsApi(api)

            async def direct(i: int) -> None:
                await objects.create_namespaced_custom_object(
                    "virtualization.deckhouse.io", "v1alpha2", NS, "virtualmachineoperations",
                    {"apiVersion": "virtualization.deckhouse.io/v1alpha2", "kind": "VirtualMachineOperation",
                     "metadata": {"name": f"direct-{i}"},
                     "spec": {"type": "Clone", "virtualMachineName": VM,
                              "clone": {"mode": "DryRun", "customization": {"namePrefix": f"d{i}-"}}}})

            base = _report("baseline: direct VMOP create", *await _run(args.n, args.concurrency, direct))

        headers = {"Authorization": f"Bearer {running.token}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            url = f"{running.rest_url}/v1/namespaces/{NS}/virtual-machines/{VM}:clone"

            async def rest(i: int) -> None:
                body = {"mode": "DryRun", "customization": {"namePrefix": f"r{i}-"}}
                async with http.post(url, json=body) as resp:
                    assert resp.status == 202, await resp.text()
                    await resp.read()

            rest_p50 = _report("gateway REST clone (202 + op)", *await _run(args.n, args.concurrency, rest))

        async with grpc.aio.insecure_channel(running.grpc_target) as channel:
            stub = clone_service_pb2_grpc.CloneServiceStub(channel)
            metadata = (("authorization", headers["Authorization"]),)

            async def rpc(i: int) -> None:
                await stub.CloneVirtualMachine(clone_service_pb2.CloneVirtualMachineRequest(
                    namespace=NS, virtual_machine_name=VM, mode=common_pb2.DRY_RUN,
                    customization=common_pb2.Customization(name_prefix=f"g{i}-")), metadata=metadata)

            grpc_p50 = _report("gateway gRPC clone (op)", *await _run(args.n, args.concurrency, rpc))
        print(f"ratio p50 vs baseline: REST {rest_p50 / base:.2f}x, gRPC {grpc_p50 / base:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
