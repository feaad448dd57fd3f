"""Text a client sent that the gateway cannot carry on.

A JSON ``"\\ud800"`` escape decodes to a lone surrogate, which no UTF-8 encoder (the
database driver, the Kubernetes client, the response writer) accepts; a NUL is refused by
PostgreSQL's text type. Both are refused at the door, naming the field, instead of failing
deeper down as a 500.
"""

from __future__ import annotations

LONE_SURROGATE = "must be valid Unicode text (it holds a lone UTF-16 surrogate)"
NUL = "must not contain NUL characters"


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be used as text, or None when it can."""
    if "\x00" in value:
        return NUL
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return LONE_SURROGATE
    return None


def printable(value: str) -> str:
    """``value`` with anything ``text_problem`` refuses escaped (``\\ud800``, ``\\x00``), so
    it can be echoed in a problem document or written to the audit log."""
    if text_problem(value) is None:
        return value
    return value.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
