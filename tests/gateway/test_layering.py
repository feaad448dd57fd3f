"""The layering rules of docs/ARCHITECTURE.md, checked on the source tree."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICE = Path(__file__).resolve().parents[2] / "service"

GATEWAY_PARTS = ["api", "core", "cluster", "store", "export", "app.py", "settings.py", "log.py"]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _files(part: str) -> list[Path]:
    target = SERVICE / part
    return sorted(target.rglob("*.py")) if target.is_dir() else [target]


@pytest.mark.parametrize("part", GATEWAY_PARTS)
def test_gateway_never_imports_the_embedded_cluster(part: str) -> None:
    offenders = [str(f.relative_to(SERVICE)) for f in _files(part)
                 if any(name.startswith("service.embedded_cluster") for name in _imports(f))]
    assert offenders == [], "the gateway must reach the embedded cluster over HTTP only"


def test_core_depends_on_no_framework() -> None:
    # The core may use the cluster layer's pure translation and kinds, never a wire or
    # storage framework: those live behind core.ports.
    frameworks = ("aiohttp", "grpc", "sqlalchemy", "kubernetes_asyncio", "service.api", "service.store",
                  "google.protobuf")
    offenders = {str(f.relative_to(SERVICE)): sorted(n for n in _imports(f) if n.startswith(frameworks))
                 for f in _files("core")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_embedded_cluster_does_not_import_the_gateway() -> None:
    gateway_modules = ("service.api", "service.core", "service.cluster", "service.store", "service.app")
    offenders = [str(f.relative_to(SERVICE)) for f in _files("embedded_cluster")
                 if any(name.startswith(gateway_modules) for name in _imports(f))]
    assert offenders == []
