#!/usr/bin/env python3
"""The gateway's idle memory, what it is made of, and a baseline from the same run.

1. Baselines: a bare ``python -c "import asyncio; ..."`` idle interpreter, and the
   embedded cluster process the gateway talks to.
2. The gateway alone (``dvp-gateway serve`` in its own process, on a database migrated
   beforehand by ``dvp-gateway migrate``, as a restarted replica finds it): VmRSS, PSS and
   USS (smaps_rollup) after start-up and again after a few REST and gRPC calls, over
   ``--runs`` fresh starts (median).
3. Its composition:
   - mappings (``/proc/<pid>/smaps``): the shared libraries by package (grpc, protobuf's
     upb, sqlalchemy's and aiohttp's C extensions, libcrypto...), the interpreter, the
     malloc heap and anonymous memory (thread stacks told apart by their size);
   - imports: a child process imports the serve path one step at a time and reports each
     step's RSS delta, and the Python heap it allocated (a second, tracemalloc'd pass);
     also what two modules kept off the serve path would add back (alembic, used only when
     there is a migration to run, and kubernetes_asyncio.client imported wholesale);
   - the Python heap of a running gateway by package, from the debug hook of ``service.cli``
     (``DVP_GATEWAY_HEAP_REPORT`` + ``PYTHONTRACEMALLOC=1``, dumped on SIGUSR1), in a
     separate gateway process since tracing inflates its RSS.

    .venv/bin/python bench/bench_memory.py [--runs 3] [--database-url URL] [--pythonpath DIR] [--skip-heap]

``--pythonpath`` measures another copy of the sources (e.g. ``git archive <commit>``
unpacked) ahead of the editable install: the before/after of a change in one command.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.processes import GatewayProcess

REPO = Path(__file__).resolve().parents[1]

KIB = 1024
MIB = 1024 * 1024
THREAD_STACK_KIB = 8 * 1024          # glibc's default pthread stack (ulimit -s), grpc's threads included
SETTLE = 1.5                         # seconds of idleness before a reading

# The serve path, in the order `dvp-gateway serve` imports it; each step's delta is what it
# adds on top of the steps before it.
IMPORT_STEPS: list[tuple[str, str]] = [
    ("asyncio (+ssl, the loop)", "asyncio"),
    ("service.cli (argparse, settings, log, yaml)", "service.cli"),
    ("grpc (+protobuf upb)", "grpc"),
    ("grpc_health + grpc_reflection", "grpc_reflection.v1alpha.reflection"),
    ("aiohttp (+web)", "aiohttp.web"),
    ("sqlalchemy core", "sqlalchemy"),
    ("kubernetes_asyncio pieces (service.cluster.client)", "service.cluster.client"),
    ("kubernetes_asyncio.config", "kubernetes_asyncio.config"),
    ("service.core (gateway, capabilities)", "service.core.gateway"),
    ("service.store (db, repositories, sqlalchemy.ext.asyncio)", "service.store.db"),
    ("service.api.grpc (+generated pb2)", "service.api.grpc"),
    ("service.api.rest", "service.api.rest"),
    ("service.app, service.launcher", "service.launcher"),
    ("aiosqlite (at connect)", "aiosqlite"),
]
# Not on the serve path (kept off it): what each would add back.
OFF_PATH_STEPS: list[tuple[str, str]] = [
    ("alembic (only when migrating)", "alembic.command"),
    ("kubernetes_asyncio.client imported wholesale", "kubernetes_asyncio.client:CoreV1Api"),
    ("sqlalchemy.orm (sqlalchemy.ext.asyncio's session half)", "sqlalchemy.ext.asyncio:AsyncSession"),
]


# ---------------------------------------------------------------- /proc readings

def status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
            out[key] = int(value.split()[0])
        elif key == "Threads":
            out[key] = int(value)
    return out


def rollup(pid: int) -> dict[str, int]:
    """VmRSS, PSS and USS (private clean + dirty), in KiB, plus the thread count."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, value = line.partition(":")
        if value.strip().endswith("kB"):
            fields[key] = int(value.split()[0])
    st = status(pid)
    return {"rss": st["VmRSS"], "pss": fields["Pss"], "uss": fields["Private_Clean"] + fields["Private_Dirty"],
            "anon": st["RssAnon"], "file": st["RssFile"], "threads": st["Threads"]}


def _mapping_group(path: str, size_kib: int, start: int, perms: str) -> str:
    if not path:
        if perms.startswith("---"):
            return "anon: reserved, no access (guard pages, arena tails)"
        if start % (64 * MIB) == 0:
            return "anon: malloc arenas of other threads"
        if abs(size_kib - THREAD_STACK_KIB) <= 8:
            return "anon: thread stacks (8 MiB mappings)"
        return "anon: pymalloc arenas, large mallocs"
    if path == "[heap]":
        return "[heap] (main malloc arena)"
    if path.startswith("["):
        return path
    if "site-packages/" in path:
        package = path.split("site-packages/", 1)[1].split("/", 1)[0]
        package = re.sub(r"\.libs$", "", package)   # auditwheel's vendored libs: grpcio.libs...
        return f"lib: {package}"
    name = Path(path).name
    if re.match(r"python3(\.\d+)?$", name) or name.startswith("libpython"):
        return "lib: python (interpreter)"
    if "/lib-dynload/" in path:
        return "lib: python stdlib C extensions"
    if ".so" in name:
        return f"lib: {re.sub(r'[.-][0-9.]*so.*$', '', name)}"
    return "file: other"


def smaps_groups(pid: int) -> dict[str, dict[str, int]]:
    """Rss / Pss / private (KiB) per group of mappings."""
    groups: dict[str, dict[str, int]] = defaultdict(lambda: {"rss": 0, "pss": 0, "uss": 0})
    current: dict[str, int] | None = None
    header = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        if header.match(line):
            parts = line.split(None, 5)
            start, end = (int(x, 16) for x in parts[0].split("-"))
            path = parts[5] if len(parts) > 5 else ""
            current = groups[_mapping_group(path, (end - start) // KIB, start, parts[1])]
            continue
        key, _, value = line.partition(":")
        if current is None or not value.strip().endswith("kB"):
            continue
        amount = int(value.split()[0])
        if key == "Rss":
            current["rss"] += amount
        elif key == "Pss":
            current["pss"] += amount
        elif key in ("Private_Clean", "Private_Dirty"):
            current["uss"] += amount
    return dict(groups)


# ---------------------------------------------------------------- processes

def bare_interpreter(env: dict[str, str]) -> dict[str, int]:
    code = "import asyncio, sys; print('ready', flush=True); asyncio.run(asyncio.sleep(600))"
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
    try:
        assert process.stdout is not None
        process.stdout.readline()
        time.sleep(SETTLE)
        return rollup(process.pid)
    finally:
        process.kill()
        process.wait()


# The import-steps child: run with -c so that nothing but ``sys`` and ``json`` is loaded
# before the first step. argv: the steps as JSON, then "traced" or "".
_CHILD = """
import gc, importlib, json, sys
steps, traced = json.loads(sys.argv[1]), sys.argv[2] == "traced"
if traced:
    import tracemalloc
    tracemalloc.start()
def rss():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
start = previous = rss()
rows = []
for label, module, off_path in steps:
    heap_before = tracemalloc.get_traced_memory()[0] if traced else 0
    modules_before = len(sys.modules)
    name, _, attr = module.partition(":")
    imported = importlib.import_module(name)
    if attr:   # a name only the package's own __init__ defines: runs it
        getattr(imported, attr)
    gc.collect()
    now = rss()
    rows.append({"label": label, "module": module, "rss_kib": now - previous, "off_path": off_path,
                 "heap_bytes": tracemalloc.get_traced_memory()[0] - heap_before if traced else 0,
                 "modules": len(sys.modules) - modules_before})
    previous = now
print(json.dumps({"start_kib": start, "rows": rows}))
"""


def import_steps(env: dict[str, str], traced: bool) -> dict[str, Any]:
    steps = [(label, module, False) for label, module in IMPORT_STEPS]
    steps += [(label, module, True) for label, module in OFF_PATH_STEPS]
    done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(steps), "traced" if traced else ""], env=env,
                          cwd=tempfile.gettempdir(), capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _call(gateway: GatewayProcess) -> None:
    """A few calls over both doors: lists on REST, health and a list on gRPC."""
    import urllib.request

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    headers = {"Authorization": f"Bearer {gateway.token}"}
    for path in ("/v1/namespaces/demo/disk-snapshots", "/v1/namespaces/demo/vm-snapshots", "/v1/operations",
                 "/v1/audit/events", "/healthz", "/readyz"):
        for _ in range(3):
            with urllib.request.urlopen(urllib.request.Request(gateway.rest_url + path, headers=headers)) as answer:
                answer.read()
    with grpc.insecure_channel(gateway.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for _ in range(5):
            health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        from service.api.grpc_gen.dvp.snapshots.v1 import snapshot_service_pb2, snapshot_service_pb2_grpc
        stub = snapshot_service_pb2_grpc.SnapshotServiceStub(channel)
        metadata = (("authorization", f"Bearer {gateway.token}"),)
        for _ in range(3):
            stub.ListDiskSnapshots(snapshot_service_pb2.ListDiskSnapshotsRequest(namespace="demo"),
                                   metadata=metadata, timeout=10)


def _heap_report(path: Path) -> tuple[int, dict[str, int]]:
    """(traced bytes, bytes by package) from the gateway's heap report."""
    traced = 0
    by_group: dict[str, int] = defaultdict(int)
    for line in path.read_text().splitlines():
        if line.startswith("# traced="):
            traced = int(line.split()[1].split("=")[1])
            continue
        size, _, filename = line.split("\t")
        by_group[_file_group(filename)] += int(size)
    return traced, dict(by_group)


def _file_group(filename: str) -> str:
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0]
    if "/service/" in filename:
        parts = filename.split("/service/", 1)[1].split("/")
        return "service." + (parts[0] if len(parts) > 1 else parts[0].removesuffix(".py"))
    if filename.startswith("<frozen"):
        return "<frozen> (import system: code objects of every module)"
    return "stdlib: " + Path(filename).name


# ---------------------------------------------------------------- report

def _mb(kib: float) -> str:
    return f"{kib / 1024:7.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="fresh gateway starts measured (median)")
    parser.add_argument("--database-url", default="", help="default: a SQLite file in a temp dir")
    parser.add_argument("--pythonpath", type=Path, default=None, help="another copy of the sources to measure")
    parser.add_argument("--skip-heap", action="store_true", help="skip the tracemalloc'd gateway")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from bench.processes import BIN, GatewayProcess, child_env, embedded_cluster_process

    # The import steps run from the temp dir: the sources come from the install (or --pythonpath).
    env = child_env(args.pythonpath)
    figures: dict[str, Any] = {"sources": str(args.pythonpath or REPO)}

    bare = bare_interpreter(env)
    figures["bare_interpreter"] = bare

    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        directory = Path(tmp)
        with embedded_cluster_process(directory, env=env) as cluster:
            gateway = GatewayProcess(directory, cluster.kubeconfig, database_url=args.database_url, env=env)
            subprocess.run([str(BIN / "dvp-gateway"), "migrate", "--data-dir", str(directory), "--database-url",
                            gateway.database_url], env=env, check=True, capture_output=True)
            idle, called = [], []
            for _ in range(args.runs):
                gateway.start()
                time.sleep(SETTLE)
                idle.append(rollup(gateway.pid))
                _call(gateway)
                time.sleep(SETTLE)
                called.append(rollup(gateway.pid))
                groups = smaps_groups(gateway.pid)
                gateway.stop()
            cluster_mem = rollup(cluster.pid)

            heap: tuple[int, dict[str, int]] | None = None
            if not args.skip_heap:
                report = directory / "heap-report.tsv"
                traced_env = dict(env, PYTHONTRACEMALLOC="1", DVP_GATEWAY_HEAP_REPORT=str(report))
                traced_gateway = GatewayProcess(directory, cluster.kubeconfig, database_url=gateway.database_url,
                                                env=traced_env, name="traced-gateway",
                                                identity=(gateway.token_file, gateway.policy_file, gateway.tokens))
                traced_gateway.start()
                _call(traced_gateway)
                time.sleep(SETTLE)
                os.kill(traced_gateway.pid, signal.SIGUSR1)
                deadline = time.monotonic() + 30
                while not report.exists() and time.monotonic() < deadline:
                    time.sleep(0.1)
                traced_gateway.stop()
                heap = _heap_report(report) if report.exists() else None

    steps = import_steps(env, traced=False)
    traced_steps = import_steps(env, traced=True)

    def median(readings: list[dict[str, int]], key: str) -> float:
        return statistics.median(r[key] for r in readings)

    print(f"sources: {figures['sources']}   database: {args.database_url or 'SQLite (temp file)'}   "
          f"runs: {args.runs}\n")
    print("== idle memory (MB = MiB; median of the runs)")
    print(f"{'process':44s} {'VmRSS':>7s} {'PSS':>7s} {'USS':>7s} {'anon':>7s} {'file':>7s} threads")
    rows = [("bare python + asyncio (baseline)", [bare]), ("embedded cluster (baseline)", [cluster_mem]),
            ("gateway, after start-up", idle), ("gateway, after calls", called)]
    for label, readings in rows:
        print(f"{label:44s} " + " ".join(_mb(median(readings, k)) for k in ("rss", "pss", "uss", "anon", "file"))
              + f" {median(readings, 'threads'):5.0f}")
    gw = median(called, "rss")
    print(f"\ngateway VmRSS after calls: {gw / 1024:.1f} MiB = {gw / bare['rss']:.2f}x the bare interpreter, "
          f"{gw / cluster_mem['rss']:.2f}x the embedded cluster; "
          f"above the bare interpreter: {(gw - bare['rss']) / 1024:.1f} MiB")
    each = ", ".join(f"{r['rss'] / 1024:.1f}" for r in called)
    print(f"runs (VmRSS MiB after calls): {each}")

    print("\n== the gateway's mappings (last run, after calls; /proc/<pid>/smaps)")
    print(f"{'group':52s} {'Rss':>7s} {'Pss':>7s} {'private':>7s}")
    for name, g in sorted(groups.items(), key=lambda item: -item[1]["rss"]):
        if g["rss"] >= 256:
            print(f"{name:52s} {_mb(g['rss'])} {_mb(g['pss'])} {_mb(g['uss'])}")

    print("\n== imports, one step at a time (a child process; RSS delta, and the Python heap it allocated)")
    print(f"{'step':52s} {'RSS MB':>7s} {'heap MB':>7s} modules")
    print(f"{'interpreter start':52s} {_mb(steps['start_kib'])}")
    heap_by_label = {row["label"]: row["heap_bytes"] for row in traced_steps["rows"]}
    for row in steps["rows"]:
        if row["off_path"]:
            continue
        print(f"{row['label']:52s} {_mb(row['rss_kib'])} {heap_by_label[row['label']] / MIB:7.1f} {row['modules']:7d}")
    print("not on the serve path (what each would add back):")
    for row in steps["rows"]:
        if row["off_path"]:
            print(f"  {row['label']:50s} {_mb(row['rss_kib'])} {heap_by_label[row['label']] / MIB:7.1f} "
                  f"{row['modules']:7d}")

    if heap is not None:
        traced, by_group = heap
        print(f"\n== Python heap of a running gateway, by package (tracemalloc, after calls): "
              f"{traced / MIB:.1f} MiB traced")
        for name, size in sorted(by_group.items(), key=lambda item: -item[1])[:15]:
            print(f"{name:60s} {size / MIB:6.1f} MiB")

    figures.update(idle=idle, called=called, cluster=cluster_mem, mappings=groups, imports=steps,
                   traced_imports=traced_steps, heap=heap)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
