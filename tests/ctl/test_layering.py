"""dvpctl is a pure REST client: it imports none of the gateway's layers (core, api, store,
cluster) nor the embedded cluster, directly or through what it imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

CTL = Path(__file__).resolve().parents[2] / "service" / "ctl"
ALLOWED = ("service.ctl", "service.client")
FORBIDDEN = ("service.core", "service.api", "service.store", "service.cluster", "service.embedded_cluster",
             "service.app", "service.export")


def test_ctl_imports_only_itself_and_the_client() -> None:
    offenders: dict[str, list[str]] = {}
    for path in sorted(CTL.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] if node.level == 0 else ["<relative>"]
            else:
                continue
            bad = [n for n in names if n == "<relative>" or (n.startswith("service") and not n.startswith(ALLOWED))]
            if bad:
                offenders.setdefault(str(path.relative_to(CTL)), []).extend(bad)
    assert offenders == {}


def test_nothing_it_loads_reaches_the_gateway() -> None:
    # Every command module, loaded in a fresh interpreter: what came with them?
    probe = ("import sys, service.ctl.main, service.ctl.parser; service.ctl.parser.build(); "
             "print('\\n'.join(sorted(m for m in sys.modules if m.startswith('service'))))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                            cwd=CTL.parents[1]).stdout.split()
    assert "service.ctl.commands.export" in loaded
    assert [m for m in loaded if m.startswith(FORBIDDEN)] == []
