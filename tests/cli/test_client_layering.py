"""The clients import no part of the gateway or the embedded cluster: only themselves, the
settings (the REST listener's default address) and the generated gRPC contract (the
messages ``GatewayClient`` sends and returns)."""

from __future__ import annotations

import ast
from pathlib import Path

CLIENT = Path(__file__).resolve().parents[2] / "service" / "client"
ALLOWED = ("service.client", "service.settings", "service.api.grpc_gen")


def test_client_imports_only_itself_the_settings_and_the_contract() -> None:
    offenders: dict[str, list[str]] = {}
    for path in sorted(CLIENT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            bad = [n for n in names if n.startswith("service") and not n.startswith(ALLOWED)]
            if bad:
                offenders.setdefault(path.name, []).extend(bad)
    assert offenders == {}
