"""Packages registered with their ``__init__`` deferred (PEP 562 ``__getattr__``).

Two libraries the gateway uses import far more in their package ``__init__`` than the
gateway needs: kubernetes_asyncio's client package imports every API class and ~800
models (32 MB of RSS), sqlalchemy.ext.asyncio's imports all of sqlalchemy.orm (5.6 MB)
for its session half. ``deferred_package`` puts such a package in ``sys.modules`` with
its ``__path__`` (so its submodules import as usual) and without running its
``__init__``; the first time anyone asks it for a name it does not have yet, the real
``__init__`` runs, so other code in the process that wants the whole library still gets
it (tests/gateway/test_import_weight.py checks both halves). Measured in
bench/bench_memory.py.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

_lock = threading.RLock()
DEFERRED = "__dvp_deferred__"  # set on a package whose ``__init__`` has not run yet


def deferred_package(name: str) -> ModuleType:
    """``name`` registered with its ``__init__`` deferred (the loaded module if it is)."""
    with _lock:
        if name in sys.modules:
            return sys.modules[name]
        module, spec = unloaded_package(name)
        loader = spec.loader
        assert loader is not None  # unloaded_package checked it

        def __getattr__(attr: str) -> Any:
            if attr.startswith("__"):  # import machinery probing (__all__, __wrapped__...): no full load
                raise AttributeError(attr)
            with _lock:
                if module.__dict__.pop("__getattr__", None) is not None:
                    module.__dict__.pop(DEFERRED, None)
                    loader.exec_module(module)
            if attr in module.__dict__:
                return module.__dict__[attr]
            raise AttributeError(f"module {name!r} has no attribute {attr!r}")

        module.__dict__["__getattr__"] = __getattr__
        module.__dict__[DEFERRED] = True
        register(name, module)
        return module


def unloaded_package(name: str) -> tuple[ModuleType, ModuleSpec]:
    """A module object for the package ``name``, its ``__init__`` not run, and its spec."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.origin is None or spec.submodule_search_locations is None:
        raise ImportError(f"{name} is not an importable package", name=name)
    return importlib.util.module_from_spec(spec), spec


def register(name: str, module: ModuleType) -> None:
    """``module`` as ``name`` in sys.modules and as an attribute of its parent package."""
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(importlib.import_module(parent), child, module)


def lock() -> threading.RLock:
    """The lock ``deferred_package`` holds (for callers that register more under it)."""
    return _lock
