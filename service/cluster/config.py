"""Where the cluster is and how to authenticate: a kubeconfig file or in-cluster config.

Each call builds a fresh ``Configuration`` (never the library's process-wide default),
so several clients for different clusters can coexist in one process.
"""

from __future__ import annotations

from pathlib import Path

from kubernetes_asyncio.client import Configuration
from kubernetes_asyncio.config import ConfigException, load_incluster_config, load_kube_config

from service.core.errors import ApiError, Code


def _config_error(message: str) -> ApiError:
    return ApiError(Code.FAILED_PRECONDITION, "CLUSTER_CONFIG_INVALID", message)


async def load_configuration(*, kubeconfig: Path | None = None, context: str | None = None,
                             in_cluster: bool = False) -> Configuration:
    """``in_cluster`` wins; otherwise ``kubeconfig`` (default: $KUBECONFIG or ~/.kube/config).

    Raises ApiError(FAILED_PRECONDITION, CLUSTER_CONFIG_INVALID) with a message that
    names the file but never its contents (it holds credentials)."""
    configuration = Configuration()
    if in_cluster:
        try:
            load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except ConfigException as exc:
            raise _config_error(f"in-cluster configuration is not available: {exc}") from None
        return configuration
    where = str(kubeconfig) if kubeconfig else "the default kubeconfig"
    try:
        await load_kube_config(config_file=str(kubeconfig) if kubeconfig else None, context=context,
                               client_configuration=configuration, persist_config=False)
    except (ConfigException, OSError, ValueError, KeyError, TypeError) as exc:
        # The exception text may quote the file; keep only its class and the file name.
        raise _config_error(f"cannot load {where} (context {context or 'current'}): "
                            f"{type(exc).__name__}") from None
    return configuration
