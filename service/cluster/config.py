"""Where the cluster is and how to authenticate: a kubeconfig file or in-cluster config.

Each call builds a fresh ``Configuration`` (never the library's process-wide default),
so several clients for different clusters can coexist in one process.

``load_kube_client`` loads only the parts of kubernetes_asyncio the gateway uses (see
there): its package ``__init__`` files would import every API class and ~800 models.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import yaml

from service import lazy_imports
from service.core.errors import ApiError, Code

if TYPE_CHECKING:
    from kubernetes_asyncio.client.configuration import Configuration

# Where a pod's service account is mounted (what the library's in-cluster loader reads).
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def _config_error(message: str) -> ApiError:
    return ApiError(Code.FAILED_PRECONDITION, "CLUSTER_CONFIG_INVALID", message)


async def load_configuration(*, kubeconfig: Path | None = None, context: str | None = None,
                             in_cluster: bool = False) -> Configuration:
    """``in_cluster`` wins; otherwise ``kubeconfig`` (default: $KUBECONFIG or ~/.kube/config).

    Raises ApiError(FAILED_PRECONDITION, CLUSTER_CONFIG_INVALID) with a message that
    names the file but never its contents (it holds credentials)."""
    # Imported here: check_kubeconfig runs at start-up before the client library is needed.
    load_kube_client()
    from kubernetes_asyncio.client.configuration import Configuration
    from kubernetes_asyncio.config import ConfigException, load_incluster_config, load_kube_config

    configuration = Configuration()
    if in_cluster:
        try:
            load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except ConfigException as exc:
            raise _config_error(f"in-cluster configuration is not available: {exc}") from None
        return configuration
    if kubeconfig is not None:
        check_kubeconfig(kubeconfig, context)
    where = str(kubeconfig) if kubeconfig else "the default kubeconfig"
    try:
        await load_kube_config(config_file=str(kubeconfig) if kubeconfig else None, context=context,
                               client_configuration=configuration, persist_config=False)
    except (ConfigException, OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as exc:
        # The exception text may quote the file; keep only its class and the file name.
        raise _config_error(f"cannot load {where} (context {context or 'current'}): "
                            f"{type(exc).__name__}") from None
    return configuration


def check_kubeconfig(path: Path, context: str | None) -> None:
    """The common mistakes, each named (the library's own errors are vaguer, or quote the
    file): unreadable, not YAML, not a kubeconfig, no such context. Names of contexts are
    not secret; nothing else of the file is repeated."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = str(exc.strerror).lower() if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise _config_error(f"cannot read {path}: {reason}") from None
    try:
        doc: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise _config_error(f"{path} is not valid YAML{at}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("contexts"), list):
        raise _config_error(f"{path} is not a kubeconfig (no 'contexts' list)")
    names = [item.get("name") for item in doc["contexts"] if isinstance(item, dict)]
    known = ", ".join(str(n) for n in names) or "none"
    if context:
        if context not in names:
            raise _config_error(f"{path} has no context {context!r} (contexts: {known})")
    elif not doc.get("current-context"):
        raise _config_error(f"{path} sets no current-context; name one of its contexts ({known})")
    elif doc["current-context"] not in names:
        raise _config_error(f"{path}: its current-context {doc['current-context']!r} is not one of "
                            f"its contexts ({known})")


def check_in_cluster() -> None:
    """What the library's in-cluster loader needs, checked without importing it: the
    service's env vars and the mounted service account."""
    if not os.environ.get("KUBERNETES_SERVICE_HOST") or not os.environ.get("KUBERNETES_SERVICE_PORT"):
        raise _config_error("in-cluster configuration is not available: KUBERNETES_SERVICE_HOST and "
                            "KUBERNETES_SERVICE_PORT are not set (not running in a pod?)")
    for name in ("token", "ca.crt"):
        if not (SERVICE_ACCOUNT_DIR / name).is_file():
            raise _config_error(f"in-cluster configuration is not available: no {SERVICE_ACCOUNT_DIR / name}")


# ---------------------------------------------------------------- kubernetes_asyncio, narrowly

_KUBE = "kubernetes_asyncio"
# The modules the gateway uses, in an order where each one's own imports are already there.
_KUBE_MODULES = ("client.exceptions", "client.configuration", "client.rest", "client.api_client",
                 "client.api.custom_objects_api")
_MODEL_IMPORT = re.compile(r"^from (kubernetes_asyncio\.client\.models\.\w+) import (\w+)$", re.MULTILINE)


def load_kube_client() -> None:
    """Import the REST client pieces of kubernetes_asyncio the gateway uses (ApiClient,
    Configuration, CustomObjectsApi, the exceptions; ``kubernetes_asyncio.config`` after
    it) without the package ``__init__`` files that import all of the library
    (``service.lazy_imports``): ``kubernetes_asyncio``, ``.client`` and ``.client.api``
    are deferred, and ``client.models`` loads just the model asked for (the ApiClient
    deserializes a typed answer by name). A no-op when the library was already imported
    the usual way."""
    with lazy_imports.lock():
        if _KUBE in sys.modules and not hasattr(sys.modules[_KUBE], lazy_imports.DEFERRED):
            return  # imported wholesale already: nothing to save
        if f"{_KUBE}.client.api.custom_objects_api" in sys.modules:
            return
        lazy_imports.deferred_package(_KUBE)
        client = lazy_imports.deferred_package(f"{_KUBE}.client")
        lazy_imports.deferred_package(f"{_KUBE}.client.api")
        _models_by_name(f"{_KUBE}.client.models")
        for name in _KUBE_MODULES:
            importlib.import_module(f"{_KUBE}.{name}")
        # What kubernetes_asyncio.config imports from the client package.
        client.__dict__.setdefault("ApiClient", sys.modules[f"{_KUBE}.client.api_client"].ApiClient)
        client.__dict__.setdefault("Configuration", sys.modules[f"{_KUBE}.client.configuration"].Configuration)


def _models_by_name(name: str) -> ModuleType:
    """The models package, each model imported when it is first asked for by name."""
    if name in sys.modules:
        return sys.modules[name]
    module, spec = lazy_imports.unloaded_package(name)
    origin = str(spec.origin)
    where: dict[str, str] = {}

    def __getattr__(attr: str) -> Any:
        if not where:  # read on first use: most processes never ask for a model
            with open(origin, encoding="utf-8") as init:
                where.update({cls: mod for mod, cls in _MODEL_IMPORT.findall(init.read())})
        if attr not in where:
            raise AttributeError(f"module {name!r} has no attribute {attr!r}")
        value = getattr(importlib.import_module(where[attr]), attr)
        setattr(module, attr, value)
        return value

    module.__dict__["__getattr__"] = __getattr__
    lazy_imports.register(name, module)
    return module
