"""The committed generated code matches proto/ (scripts/gen-proto --check)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_fresh() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen-proto"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"stale generated code:\n{done.stdout}{done.stderr}"


def test_generated_modules_import_under_the_service_package() -> None:
    from service.api.grpc_gen.dvp.snapshots.v1 import snapshot_service_pb2, snapshot_service_pb2_grpc

    assert snapshot_service_pb2.DESCRIPTOR.package == "dvp.snapshots.v1"
    assert hasattr(snapshot_service_pb2_grpc, "SnapshotServiceStub")
    generated = ROOT / "service" / "api" / "grpc_gen"
    for path in [*generated.rglob("*.py"), *generated.rglob("*.pyi")]:  # not __pycache__'s .pyc
        text = path.read_text()
        assert "from dvp." not in text and "import dvp." not in text, path
