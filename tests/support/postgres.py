"""PostgreSQL fixtures: a real throwaway server started from the machine's binaries.

``postgres_server`` (session): initdb in a temp dir, then ``postgres`` itself as a child
of the test process (it gets SIGQUIT if that process dies, so even a killed test run
leaves no server behind); trust auth on 127.0.0.1 and a private unix socket only,
durability off for speed; stopped and deleted at the end of the session. Each xdist
worker starts its own. As root, initdb and the server run as the ``postgres`` system
user (PostgreSQL refuses root). Missing binaries fail the tests, never skip them.
``postgres_url`` (session): the server's maintenance database URL.
``database_url`` (function, parametrized sqlite|postgresql): a fresh, empty database.
``database`` (function): ``database_url`` migrated and connected as a ``Database``.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from service.store.db import Database, migrate

_PG_BIN_CANDIDATES = (Path("/usr/lib/postgresql/15/bin"), Path("/usr/local/bin"))
_SERVER_USER = "postgres"
_START_ATTEMPTS = 3
_START_TIMEOUT_S = 60.0
_PR_SET_PDEATHSIG = 1
_STALE_AFTER_S = 600
_database_numbers = itertools.count(1)
_USER_SCHEMAS = "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'"


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    socket_dir: Path
    data_dir: Path
    # Emptied databases waiting for the next test: CREATE DATABASE costs ~0.3 s on this
    # box, emptying one ~30 ms.
    spare_databases: list[str] = field(default_factory=list, compare=False)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://{self.user}@{self.host}:{self.port}/{database}"


def _bin_dir() -> Path:
    for candidate in _PG_BIN_CANDIDATES:
        if all((candidate / tool).is_file() for tool in ("initdb", "postgres")):
            return candidate
    found = shutil.which("initdb")
    if found and (Path(found).parent / "postgres").is_file():
        return Path(found).parent
    pytest.fail("PostgreSQL server binaries (initdb, postgres) were not found in "
                f"{', '.join(map(str, _PG_BIN_CANDIDATES))} or on PATH; install PostgreSQL 15 to run the store tests",
                pytrace=False)


def _server_account() -> dict[str, Any]:
    """subprocess arguments that drop root to the ``postgres`` user (nothing otherwise)."""
    if os.geteuid() != 0:
        return {}
    try:
        account = pwd.getpwnam(_SERVER_USER)
    except KeyError:
        pytest.fail(f"running as root and there is no {_SERVER_USER!r} system user to run PostgreSQL as",
                    pytrace=False)
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def _die_with_parent() -> None:
    """preexec_fn (runs after the uid switch, which would reset it): SIGQUIT, postgres's
    immediate shutdown, when the test process exits for any reason."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGQUIT)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _postmaster_alive(data: Path) -> bool:
    try:
        pid = int((data / "postmaster.pid").read_text().splitlines()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return False
    return True


def _remove_stale_clusters() -> None:
    """Directories left by a test process that was killed (its server died with it)."""
    for base in Path(tempfile.gettempdir()).glob("dvp-pg-*"):
        with contextlib.suppress(OSError):
            old_enough = time.time() - base.stat().st_mtime > _STALE_AFTER_S  # not one being initdb'd now
            if old_enough and not _postmaster_alive(base / "data"):
                shutil.rmtree(base, ignore_errors=True)


class _Cluster:
    """One initdb'd data directory and the postmaster running on it."""

    def __init__(self, worker: str, *, durable: bool = False) -> None:
        self.durable = durable  # benchmarks: fsync and synchronous commits, as in production
        self.bin = _bin_dir()
        self.account = _server_account()
        self.base = Path(tempfile.mkdtemp(prefix=f"dvp-pg-{worker}-"))
        self.data = self.base / "data"
        self.sockets = self.base / "sock"
        self.log = self.base / "server.log"
        self.sockets.mkdir()
        self._chown(self.base, self.sockets)
        self.process: subprocess.Popen[bytes] | None = None

    def _chown(self, *paths: Path) -> None:
        if self.account:
            for path in paths:
                os.chown(path, self.account["user"], self.account["group"])

    def init(self) -> None:
        done = subprocess.run([str(self.bin / "initdb"), "-D", str(self.data), "-U", _SERVER_USER, "--auth=trust",
                               "--no-sync", "--encoding=UTF8", "--locale=C"], cwd=self.base, capture_output=True,
                              text=True, timeout=120, check=False, **self.account)
        if done.returncode != 0:
            pytest.fail(f"initdb failed ({done.returncode}): {done.stdout[-2000:]}{done.stderr[-2000:]}",
                        pytrace=False)
        # Trust, but only over the private socket directory and loopback.
        hba = self.data / "pg_hba.conf"
        hba.write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
        self._chown(hba)
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(f"listen_addresses = '127.0.0.1'\nunix_socket_directories = '{self.sockets}'\n"
                       "max_connections = 200\n")
            if not self.durable:
                conf.write("fsync = off\nfull_page_writes = off\nsynchronous_commit = off\n")

    def start(self) -> int:
        for _ in range(_START_ATTEMPTS):
            port = _free_port()  # another process can take it before postgres binds: retry then
            with self.log.open("ab") as log:
                self.process = subprocess.Popen(  # preexec_fn: see _die_with_parent
                    [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(port)], cwd=self.base,
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
                    **self.account)
            if self._wait_ready():
                return port
            self.stop_server()
        pytest.fail(f"PostgreSQL did not start after {_START_ATTEMPTS} attempts:\n"
                    f"{self.log.read_text(errors='replace')[-4000:]}", pytrace=False)

    def _wait_ready(self) -> bool:
        """Like ``pg_ctl -w``: the postmaster writes "ready" into postmaster.pid."""
        deadline = time.monotonic() + _START_TIMEOUT_S
        pid_file = self.data / "postmaster.pid"
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            try:
                lines = pid_file.read_text().splitlines()
            except FileNotFoundError:
                lines = []
            if len(lines) >= 8 and lines[7].strip() == "ready":
                return True
            time.sleep(0.05)
        return False

    def stop_server(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # immediate shutdown: the data is thrown away
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self.process = None

    def stop(self) -> None:
        self.stop_server()
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    # xdist workers ("gw0", ...) each run their own server, in their own directory.
    _remove_stale_clusters()
    cluster = _Cluster(os.environ.get("PYTEST_XDIST_WORKER", "main"))
    # A backstop for an interpreter exit that skips fixture teardown.
    atexit.register(cluster.stop)
    try:
        cluster.init()
        port = cluster.start()
        yield PostgresServer(host="127.0.0.1", port=port, user=_SERVER_USER, socket_dir=cluster.sockets,
                             data_dir=cluster.data)
    finally:
        cluster.stop()
        atexit.unregister(cluster.stop)


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    return postgres_server.url()


async def _execute(url: str, *statements: str) -> list[list[str]]:
    """Run statements outside a transaction (CREATE/DROP DATABASE need that); the first
    column of each statement's rows."""
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            results = []
            for statement in statements:
                result = await conn.execute(text(statement))
                results.append([str(row[0]) for row in result] if result.returns_rows else [])
            return results
    finally:
        await engine.dispose()


async def _take_database(server: PostgresServer) -> str:
    if server.spare_databases:
        return server.spare_databases.pop()
    name = f"test_{next(_database_numbers)}"
    await _execute(server.url(), f'CREATE DATABASE "{name}"')
    return name


async def _give_back(server: PostgresServer, name: str) -> None:
    """Empty ``name`` for reuse (every user schema dropped); drop it if that fails."""
    try:
        # Connections the test left open would block the DROP SCHEMA below.
        await _execute(server.url(), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                     f"WHERE datname = '{name}' AND pid <> pg_backend_pid()")
        [schemas] = await _execute(server.url(name), _USER_SCHEMAS)
        await _execute(server.url(name), *(f'DROP SCHEMA "{schema}" CASCADE' for schema in schemas),
                       "CREATE SCHEMA public")
    except Exception:
        await _execute(server.url(), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        raise
    server.spare_databases.append(name)


@pytest.fixture(params=["sqlite", "postgresql"], ids=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database for one test (not migrated)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = await _take_database(server)
    yield server.url(name)
    await _give_back(server, name)


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """``database_url`` migrated to head and connected; closed after the test."""
    await migrate(database_url)
    db = await Database.connect(database_url)
    try:
        yield db
    finally:
        await db.close()
