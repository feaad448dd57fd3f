"""The core names fields as its request objects do (snake_case); REST callers know the JSON
names. One mapping, applied to field violations and to the words of error messages."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from service.core import requests

# Renames that are not a case change: the idempotency key and the watch position travel
# in headers, an operation's id is the path's {id}.
_FIELD_RENAMES = {"request_id": "Idempotency-Key", "after_version": "Last-Event-ID",
                  "keep_ip_address": "keepIPAddress", "operation_id": "id"}
# A clone's options as the core's request object nests them, and where the body has them
# (the core reports the proto names, "customization.name_prefix"; both are understood).
_PREFIX_RENAMES = (("options.name_prefix", "customization.name_prefix"),
                   ("options.name_suffix", "customization.name_suffix"),
                   ("options.", ""))
# A path of identifiers with array indices: "name_replacements[0].from.name"; a map key
# ("labels['a_b']") ends it and is left as is.
_PATH_RE = re.compile(r"^[a-z0-9_]+(?:\[\d+\])*(?:\.[a-z0-9_]+(?:\[\d+\])*)*")
_IDENTIFIER_RE = re.compile(r"[a-z0-9_]+")
# A snake_case word in prose, not inside quotes (a quoted word is a value the caller sent).
_SNAKE_WORD_RE = re.compile(r"(?<![\w'\"])[a-z][a-z0-9]*(?:_[a-z0-9]+)+(?![\w'\"])")


def _request_field_names() -> frozenset[str]:
    names = {"next_page_token"}  # what a page token must come from
    for value in vars(requests).values():
        if isinstance(value, type) and dataclasses.is_dataclass(value):
            names.update(f.name for f in dataclasses.fields(value))
    return frozenset(name for name in names if "_" in name)


# Only words that are field names of the core's requests are renamed in messages, so a
# word that merely looks like one ("virtual_machine" in a sentence) is left alone.
_SNAKE_FIELDS = _request_field_names()


def rest_field_name(field: str) -> str:
    """``virtual_disk_name`` -> ``virtualDiskName``, ``name_replacements[0].from.name`` ->
    ``nameReplacements[0].from.name``; a ``labels['a_b']`` key is left as is."""
    if field in _FIELD_RENAMES:
        return _FIELD_RENAMES[field]
    for core, rest in _PREFIX_RENAMES:
        if field.startswith(core):
            field = rest + field[len(core):]
            break
    match = _PATH_RE.match(field)
    if match is None:
        return field
    head = _IDENTIFIER_RE.sub(lambda m: _camel(m.group(0)), match.group(0))
    return head + field[match.end():]


def rest_text(text: str, fields: Iterable[str] = ()) -> str:
    """A core message with the REST names: first the violations' own paths (they may be
    renamed as a whole, ``options.name_prefix``), then every snake_case field name."""
    for field in sorted(set(fields), key=len, reverse=True):
        renamed = rest_field_name(field)
        if renamed != field:
            text = re.sub(rf"(?<![\w.]){re.escape(field)}(?!\w)", renamed.replace("\\", "\\\\"), text)
    return _SNAKE_WORD_RE.sub(_rename_word, text)


def _rename_word(match: re.Match[str]) -> str:
    word = match.group(0)
    return rest_field_name(word) if word in _SNAKE_FIELDS else word


def _camel(snake: str) -> str:
    first, *rest = snake.split("_")
    return first + "".join(word[:1].upper() + word[1:] for word in rest)
