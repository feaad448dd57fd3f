#!/usr/bin/env python3
"""The guide's disk snapshot through the raw gRPC stubs: create it, then follow the operation.

    .venv/bin/python scripts/grpc-example.py

The address and the token default to what `dvp-gateway serve` wrote in var/client.yaml.
(service.client.GatewayClient does the same with typed errors, retries and wait().)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid

import grpc

from service.api.grpc_gen.dvp.snapshots.v1 import (
    operation_pb2,
    operation_service_pb2,
    operation_service_pb2_grpc,
    snapshot_service_pb2,
    snapshot_service_pb2_grpc,
)
from service.client.config import ConfigError, find_config, load_config


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    try:
        config = load_config(find_config())
        token = config.bearer_token()
    except ConfigError as exc:
        parser.error(str(exc))
    parser.add_argument("--target", default=config.grpc, help="host:port (default: %(default)s)")
    parser.add_argument("--token", default=token, required=not token, help="bearer token (default: the config's)")
    parser.add_argument("--namespace", default="demo")
    parser.add_argument("--disk", default="linux-vm-root")
    parser.add_argument("--name", default="linux-vm-root-snapshot-grpc")
    parser.add_argument("--request-id", default=str(uuid.uuid4()), help="idempotency key; replay to get the same op")
    args = parser.parse_args()

    metadata = (("authorization", f"Bearer {args.token}"),)
    async with grpc.aio.insecure_channel(args.target) as channel:
        snapshots = snapshot_service_pb2_grpc.SnapshotServiceStub(channel)
        operations = operation_service_pb2_grpc.OperationServiceStub(channel)
        op = await snapshots.CreateDiskSnapshot(
            snapshot_service_pb2.CreateDiskSnapshotRequest(
                namespace=args.namespace, name=args.name, virtual_disk_name=args.disk,
                required_consistency=True, request_id=args.request_id),
            metadata=metadata)
        print(f"operation {op.id}: {operation_pb2.Operation.State.Name(op.state)} {op.phase}")
        for warning in op.warnings:
            print(f"  warning: {warning}")
        stream = operations.WatchOperation(operation_service_pb2.WatchOperationRequest(operation_id=op.id),
                                           metadata=metadata)
        async for update in stream:
            print(f"  v{update.version}: {operation_pb2.Operation.State.Name(update.state)} phase={update.phase}")
            if update.done:
                break
        return 0 if update.state == operation_pb2.Operation.State.SUCCEEDED else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
