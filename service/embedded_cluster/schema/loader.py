"""The served resource types, read once from the schema-only CRD copies in
``service/embedded_cluster/crds``."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

from service.embedded_cluster.contracts import Obj, ResourceType

CRD_DIR = Path(__file__).resolve().parent.parent / "crds"
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)   # libyaml when present: much faster


class CrdError(ValueError):
    """A CRD file that is not a usable CustomResourceDefinition."""


def _tuple_of_strings(value: Any) -> tuple[str, ...]:
    return tuple(str(item) for item in value or ())


def resource_types_of(crd: Obj, source: str = "") -> list[ResourceType]:
    """One ResourceType per served version of a CRD."""
    if crd.get("kind") != "CustomResourceDefinition":
        raise CrdError(f"{source}: not a CustomResourceDefinition")
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    kind, plural = names.get("kind"), names.get("plural")
    if not kind or not plural or not spec.get("group"):
        raise CrdError(f"{source}: group, names.kind and names.plural are required")
    types: list[ResourceType] = []
    for version in spec.get("versions") or ():
        if not version.get("served"):
            continue
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        if not isinstance(schema, dict):
            raise CrdError(f"{source}: version {version.get('name')} has no openAPIV3Schema")
        types.append(ResourceType(
            group=str(spec["group"]),
            version=str(version["name"]),
            kind=str(kind),
            plural=str(plural),
            singular=str(names.get("singular") or str(kind).lower()),
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            list_kind=str(names.get("listKind") or f"{kind}List"),
            short_names=_tuple_of_strings(names.get("shortNames")),
            categories=_tuple_of_strings(names.get("categories")),
            printer_columns=tuple(version.get("additionalPrinterColumns") or ()),
            has_status="status" in (version.get("subresources") or {}),
            schema=schema,
        ))
    return types


def load_crds(directory: Path = CRD_DIR) -> list[Obj]:
    crds: list[Obj] = []
    for path in sorted(directory.glob("*.yaml")):
        crds.extend(document for document in yaml.load_all(path.read_text(encoding="utf-8"), Loader=_LOADER)
                    if isinstance(document, dict))
    if not crds:
        raise CrdError(f"no CRDs in {directory}")
    return crds


@functools.cache
def _cached_types() -> tuple[ResourceType, ...]:
    types: list[ResourceType] = []
    for crd in load_crds():
        types.extend(resource_types_of(crd, str((crd.get("metadata") or {}).get("name", ""))))
    return tuple(types)


def load_resource_types() -> list[ResourceType]:
    """Every served version of every bundled CRD (parsed once per process; the list is
    new on each call, the ResourceTypes and their schemas are shared: do not mutate them)."""
    return list(_cached_types())
