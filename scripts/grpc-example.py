#!/usr/bin/env python3
"""The guide's disk snapshot through the gRPC API: create it, then follow the operation.

    .venv/bin/python scripts/grpc-example.py --token "$(cat var/dev-token)"
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


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="127.0.0.1:50051")
    parser.add_argument("--token", required=True)
    parser.add_argument("--namespace", default="demo")
    parser.add_argument("--disk", default="linux-vm-root")
    parser.add_argument("--name", default="linux-vm-root-snapshot")
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
