"""Small helpers over plain Kubernetes object dicts: metadata, conditions, quantities, time."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from service.embedded_cluster.contracts import Obj

_BINARY = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50, "Ei": 1 << 60}
_DECIMAL = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18, "": 1}
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[kMGTPE])?$")


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def parse_quantity(value: Any) -> int | None:
    """Bytes of a resource.Quantity ("10Gi", "1500M", 1024); None when it is not one we accept."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if not isinstance(value, str):
        return None
    match = _QUANTITY.match(value.strip())
    if match is None:
        return None
    number, suffix = match.group(1), match.group(2) or ""
    try:
        amount = Decimal(number)
    except InvalidOperation:
        return None
    multiplier = _BINARY.get(suffix) or _DECIMAL[suffix]
    return int(amount * multiplier)


def format_quantity(size: int) -> str:
    """The shortest exact binary-suffixed form, as the API server canonicalises it."""
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        unit = _BINARY[suffix]
        if size >= unit and size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)


def meta(obj: Obj) -> dict[str, Any]:
    value = obj.setdefault("metadata", {})
    assert isinstance(value, dict)
    return value


def name_of(obj: Obj) -> str:
    return str(obj.get("metadata", {}).get("name", ""))


def namespace_of(obj: Obj) -> str:
    return str(obj.get("metadata", {}).get("namespace") or "")


def uid_of(obj: Obj) -> str:
    return str(obj.get("metadata", {}).get("uid", ""))


def annotation(obj: Obj, key: str) -> str:
    value = (obj.get("metadata", {}).get("annotations") or {}).get(key, "")
    return value if isinstance(value, str) else ""


def spec(obj: Obj | None) -> dict[str, Any]:
    value = obj.get("spec") if obj is not None else None
    return value if isinstance(value, dict) else {}


def status(obj: Obj | None) -> dict[str, Any]:
    value = obj.get("status") if obj is not None else None
    return value if isinstance(value, dict) else {}


def phase(obj: Obj | None) -> str:
    return str(status(obj).get("phase", ""))


def owner_reference(owner: Obj, *, controller: bool = True) -> Obj:
    return {"apiVersion": owner.get("apiVersion", ""), "kind": owner.get("kind", ""), "name": name_of(owner),
            "uid": uid_of(owner), "controller": controller, "blockOwnerDeletion": True}


def get_condition(obj: Obj | None, ctype: str) -> Obj | None:
    for cond in status(obj).get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == ctype:
            return cond
    return None


def condition_true(obj: Obj | None, ctype: str) -> bool:
    cond = get_condition(obj, ctype)
    return cond is not None and cond.get("status") == "True"


def set_condition(st: dict[str, Any], ctype: str, cstatus: str, reason: str, message: str = "",
                  generation: int | None = None) -> None:
    """Set one condition, keeping lastTransitionTime unless the status flips (as metav1 does)."""
    conditions: list[Obj] = [c for c in st.get("conditions") or [] if isinstance(c, dict)]
    previous = next((c for c in conditions if c.get("type") == ctype), None)
    transition = now_rfc3339()
    if previous is not None and previous.get("status") == cstatus and previous.get("lastTransitionTime"):
        transition = str(previous["lastTransitionTime"])
    new: Obj = {"type": ctype, "status": cstatus, "reason": reason, "message": message,
                "lastTransitionTime": transition}
    if generation is not None:
        new["observedGeneration"] = generation
    st["conditions"] = [c for c in conditions if c.get("type") != ctype] + [new]


def remove_condition(st: dict[str, Any], ctype: str) -> None:
    st["conditions"] = [c for c in st.get("conditions") or [] if isinstance(c, dict) and c.get("type") != ctype]


def generation_of(obj: Obj) -> int:
    value = obj.get("metadata", {}).get("generation", 0)
    return value if isinstance(value, int) else 0


def same_status(old: Obj, new_status: dict[str, Any]) -> bool:
    """Equal ignoring lastTransitionTime, so an idempotent reconcile writes nothing."""
    def strip(st: dict[str, Any]) -> dict[str, Any]:
        copy = dict(st)
        copy["conditions"] = sorted(
            ({k: v for k, v in c.items() if k != "lastTransitionTime"} for c in st.get("conditions") or []),
            key=lambda c: str(c.get("type")))
        return copy
    return strip(status(old)) == strip(new_status)
