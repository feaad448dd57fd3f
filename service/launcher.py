"""Embedded mode: start the embedded cluster in-process and hand the gateway a
kubeconfig for it.

This module is the only gateway-side code that knows the embedded cluster exists, and
it loads it by name at run time: the gateway proper (api, core, cluster, store) never
imports it and reaches it over HTTP only, exactly as it would a real cluster.
"""

from __future__ import annotations

import importlib
import os
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from pathlib import Path
from typing import Any

from service.core.auth import create_dev_token_file
from service.settings import Settings

EMBEDDED_MODULE = "service.embedded_cluster.server"


class EmbeddedHandle:
    """A started embedded cluster, seen only through its URL and kubeconfig."""

    def __init__(self, cluster: Any, kubeconfig: Path) -> None:
        self._cluster = cluster
        self.kubeconfig = kubeconfig

    @property
    def url(self) -> str:
        return str(self._cluster.url)

    async def stop(self) -> None:
        await self._cluster.stop()


async def start_embedded_cluster(settings: Settings) -> EmbeddedHandle:
    module = importlib.import_module(EMBEDDED_MODULE)
    # TLS on: kubectl (client-go) refuses to send a bearer token over plain HTTP, and a
    # person trying the product should be able to point kubectl at it. The state directory
    # keeps the cluster's objects (so the SQL history and the cluster agree after a restart)
    # and its CA, admin token and port (so the kubeconfig written below stays valid).
    config = module.EmbeddedClusterConfig(port=settings.embedded_port, tls=True,
                                          step_delay=settings.embedded_step_delay,
                                          seed_demo=settings.embedded_seed_demo,
                                          state_dir=settings.data_dir / "embedded-cluster")
    cluster = module.EmbeddedCluster(config)
    # A damaged state directory raises the embedded cluster's StateError: one line naming
    # the file and what is wrong, which `dvp-gateway serve` reports as its start-up error.
    await cluster.start()
    path = settings.data_dir / "embedded-kubeconfig.yaml"
    cluster.write_kubeconfig(path)
    os.chmod(path, 0o600)
    return EmbeddedHandle(cluster, path)


def ensure_dev_token(settings: Settings) -> tuple[Settings, str | None]:
    """In embedded mode with no token file given, create one (once) and remember its
    dev token in a 0600 file so it can be shown at every start."""
    if settings.token_file is not None or settings.auth != "static":
        return settings, None
    token_file = settings.data_dir / "tokens.yaml"
    token_path = settings.data_dir / "dev-token"
    if token_file.exists() and token_path.exists():
        token = token_path.read_text().strip()
    else:
        token = create_dev_token_file(token_file)
        token_path.write_text(token + "\n")
        os.chmod(token_path, 0o600)
        os.chmod(token_file, 0o600)
    return replace(settings, token_file=token_file), token


def embedded_context(settings: Settings) -> AbstractAsyncContextManager[EmbeddedHandle]:
    class _Ctx(AbstractAsyncContextManager[EmbeddedHandle]):
        handle: EmbeddedHandle | None = None

        async def __aenter__(self) -> EmbeddedHandle:
            self.handle = await start_embedded_cluster(settings)
            return self.handle

        async def __aexit__(self, *exc: object) -> None:
            if self.handle is not None:
                await self.handle.stop()

    return _Ctx()
