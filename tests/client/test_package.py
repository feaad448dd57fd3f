"""``service.client`` re-exports the client's public names, imported on first use: the
REST download command and `serve`'s config writer import the package without gRPC."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import service.client

REPO = Path(__file__).resolve().parents[2]


def test_every_public_name_resolves_to_its_module() -> None:
    assert sorted(service.client.__all__) == sorted(service.client._HOMES)
    for name in service.client.__all__:
        value = getattr(service.client, name)
        assert value.__module__ == service.client._HOMES[name], name


def test_the_config_and_download_modules_do_not_import_grpc() -> None:
    code = ("import json, sys, service.client.config, service.client.command\n"
            "print(json.dumps(sorted(m for m in sys.modules if m == 'grpc' or m.startswith('service.client.'))))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    assert "grpc" not in loaded and "service.client.gateway" not in loaded, loaded
