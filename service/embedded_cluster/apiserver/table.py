"""meta.k8s.io/v1 Table output built from a CRD's additionalPrinterColumns."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from service.embedded_cluster.apiserver import jsonpath
from service.embedded_cluster.contracts import Obj, ResourceType, StatusError

_NAME_COLUMN: Obj = {"name": "Name", "type": "string", "format": "name", "priority": 0,
                     "description": "Name must be unique within a namespace."}
_DEFAULT_COLUMNS: tuple[Obj, ...] = ({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},)
INCLUDE_OBJECT = ("Metadata", "Object", "None")


def human_duration(seconds: float) -> str:
    """Kubernetes' duration.HumanDuration (what the AGE column shows)."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        return f"{minutes}m{whole % 60}s" if whole % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def _cell(column_type: str, value: Any) -> Any:
    if column_type == "date":
        if not isinstance(value, str):
            return None
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return human_duration((datetime.now(UTC) - moment).total_seconds())
    if column_type == "integer":
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    if column_type == "number":
        return value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if column_type == "boolean":
        return value if isinstance(value, bool) else None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, separators=(",", ":"))


class TableConverter:
    def __init__(self, rtype: ResourceType) -> None:
        self.rtype = rtype
        columns = rtype.printer_columns or _DEFAULT_COLUMNS
        self._columns: list[tuple[Obj, list[Any] | None]] = []
        for column in columns:
            try:
                steps: list[Any] | None = jsonpath.parse(str(column.get("jsonPath", "")))
            except jsonpath.JsonPathError:
                steps = None   # an unusable column still shows, empty, as the real server does
            self._columns.append((column, steps))

    def definitions(self) -> list[Obj]:
        definitions = [_NAME_COLUMN]
        for column, _ in self._columns:
            definitions.append({"name": str(column.get("name", "")), "type": str(column.get("type", "string")),
                                "format": str(column.get("format", "")),
                                "description": str(column.get("description", "")),
                                "priority": int(column.get("priority", 0) or 0)})
        return definitions

    def row(self, obj: Obj, include_object: str) -> Obj:
        cells: list[Any] = [obj.get("metadata", {}).get("name", "")]
        for column, steps in self._columns:
            found = jsonpath.find(steps, obj) if steps is not None else []
            cells.append(_cell(str(column.get("type", "string")), found[0]) if found else None)
        row: Obj = {"cells": cells}
        if include_object == "Object":
            row["object"] = obj
        elif include_object == "Metadata":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": obj.get("metadata", {})}
        return row

    def table(self, objects: list[Obj], include_object: str, list_meta: Obj, api_version: str) -> Obj:
        return {"kind": "Table", "apiVersion": api_version, "metadata": list_meta,
                "columnDefinitions": self.definitions(),
                "rows": [self.row(obj, include_object) for obj in objects]}


def include_object_param(value: str | None) -> str:
    if value is None or value == "":
        return "Metadata"
    if value not in INCLUDE_OBJECT:
        raise StatusError(400, "BadRequest", f"includeObject must be one of {', '.join(INCLUDE_OBJECT)}")
    return value
