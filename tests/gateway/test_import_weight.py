"""What `dvp-gateway serve` imports: the heavy modules kept off its path stay off it.

Each of these was measured in bench/bench_memory.py (RSS added when imported); a module
re-added by accident makes the idle gateway that much bigger. Run in a subprocess: the
test process itself has imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Module -> why it must not be on the serve path (and what it costs there).
KEPT_OFF = {
    "alembic": "only needed when there is a migration to run (+8 MB with mako, pygments)",
    "mako": "alembic's templates",
    "pygments": "mako's highlighting",
    "kubernetes_asyncio.client.api.core_v1_api": "the client package imported wholesale (+32 MB)",
    "kubernetes_asyncio.client.models.v1_pod": "the ~800 models imported wholesale",
    "kubernetes_asyncio.watch": "kubernetes_asyncio's own __init__ (watch, stream, dynamic)",
    "kubernetes_asyncio.dynamic": "kubernetes_asyncio's own __init__",
    "sqlalchemy.orm": "the store is written on Core; sqlalchemy.ext.asyncio's session half (+5.6 MB)",
    "service.embedded_cluster": "reached over HTTP only, from its own process",
    "service.client": "the download command",
    "rich": "the download command's progress bar",
    "schemathesis": "tests only",
    "opentelemetry": "tracing is off by default: neither the API nor the SDK is loaded then",
}

_SERVE_IMPORTS = """
import json, sys
import service.cli
# What cli._start imports once the flags are parsed.
import service.app, service.launcher, service.store.engine
print(json.dumps(sorted(sys.modules)))
"""


def _modules(code: str, *args: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def _offenders(modules: set[str]) -> dict[str, str]:
    return {name: why for name, why in KEPT_OFF.items()
            if name in modules or any(m.startswith(name + ".") for m in modules)}


def test_the_serve_path_imports_none_of_the_heavy_modules() -> None:
    modules = _modules(_SERVE_IMPORTS)
    assert _offenders(modules) == {}
    # The REST client pieces the gateway uses, not the library's ~1000 modules.
    assert len([m for m in modules if m.startswith("kubernetes_asyncio")]) < 20


_RESTART = """
import asyncio, json, sys
import service.app
from service.app import open_database

async def main(url):
    database = await open_database(url)   # migrate (at head already: no alembic) + connect
    assert await database.ping()
    await database.close()

asyncio.run(main(sys.argv[1]))
print(json.dumps(sorted(sys.modules)))
"""


def test_a_start_on_a_migrated_database_imports_neither_alembic_nor_the_orm(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    first = _modules(_RESTART, url)
    assert "alembic" in first   # the first start migrates
    again = _modules(_RESTART, url)
    assert _offenders(again) == {}


_LATER_USERS = """
import json, sys
import service.app
# Code elsewhere in a process that asks for the rest of the libraries still gets it.
from kubernetes_asyncio.client import CoreV1Api, V1Pod
from kubernetes_asyncio.client.models import V1APIResourceList
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
import kubernetes_asyncio
assert kubernetes_asyncio.watch.Watch and kubernetes_asyncio.config.load_kube_config
assert V1APIResourceList.__name__ == "V1APIResourceList" and CoreV1Api and V1Pod
assert AsyncSession and async_sessionmaker
print(json.dumps(sorted(sys.modules)))
"""


def test_the_deferred_packages_still_give_everything_on_demand() -> None:
    modules = _modules(_LATER_USERS)
    assert "sqlalchemy.orm" in modules and "kubernetes_asyncio.client.api.core_v1_api" in modules
