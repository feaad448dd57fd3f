"""Text both backends can store.

PostgreSQL rejects NUL characters in text, and neither driver can encode lone UTF-16
surrogates (which a hostile JSON body can smuggle in as ``\\ud800``). Values written are
cleaned (each such character becomes U+FFFD); values only looked up are checked, since
nothing stored can contain them.
"""

from __future__ import annotations

import re
from typing import Any

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def storable(*values: str | None) -> bool:
    return not any(value is not None and _UNSTORABLE.search(value) for value in values)


def clean_text(value: str) -> str:
    return _UNSTORABLE.sub(REPLACEMENT, value)


def clean_json(value: Any) -> Any:
    """``value`` with every string (keys included) cleaned; other JSON values unchanged."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(str(k)) if isinstance(k, str) else k: clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    return value
