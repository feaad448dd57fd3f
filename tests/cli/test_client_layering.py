"""The download client is a REST client: it imports no part of the gateway or the embedded
cluster (only the settings, for the REST listener's default address)."""

from __future__ import annotations

import ast
from pathlib import Path

CLIENT = Path(__file__).resolve().parents[2] / "service" / "client"
ALLOWED = ("service.client", "service.settings")


def test_client_imports_only_itself_and_the_settings() -> None:
    offenders: dict[str, list[str]] = {}
    for path in sorted(CLIENT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            bad = [n for n in names if n.startswith("service") and not n.startswith(ALLOWED)]
            if bad:
                offenders.setdefault(path.name, []).extend(bad)
    assert offenders == {}
