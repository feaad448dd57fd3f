"""String formats the API server checks (kube-openapi's strfmt registry); a format it
does not know is ignored, as in Kubernetes."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import ipaddress
from collections.abc import Callable

from service.embedded_cluster.schema.regex import regex

_DATE_TIME = regex(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_DATE = regex(r"^\d{4}-\d{2}-\d{2}$")
_UUID = regex(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
_MAC = regex(r"^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$")
_HOST_LABEL = r"[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?"
_HOSTNAME = regex(rf"^({_HOST_LABEL}\.)*{_HOST_LABEL}\.?$")
_EMAIL = regex(r"^[^@\s]+@[^@\s]+$")
_URI_SCHEME = regex(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_DURATION = regex(r"^([0-9]+(\.[0-9]+)?\s*(ns|us|µs|ms|s|m|h|d|w)\s*)+$")


def _date_time(text: str) -> bool:
    if not _DATE_TIME.matches(text):
        return False
    normalized = text.replace("z", "Z").replace("t", "T").replace(" ", "T").replace("Z", "+00:00")
    try:
        dt.datetime.fromisoformat(normalized)
    except ValueError:
        return False
    return True


def _date(text: str) -> bool:
    if not _DATE.matches(text):
        return False
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _byte(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _ip(version: int) -> Callable[[str], bool]:
    def check(text: str) -> bool:
        try:
            return ipaddress.ip_address(text).version == version
        except ValueError:
            return False
    return check


def _cidr(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return "/" in text


def _uri(text: str) -> bool:
    return _URI_SCHEME.matches(text) and not any(c.isspace() for c in text)


FORMATS: dict[str, Callable[[str], bool]] = {
    "date-time": _date_time,
    "datetime": _date_time,
    "date": _date,
    "byte": _byte,
    "uuid": _UUID.matches,
    "ipv4": _ip(4),
    "ipv6": _ip(6),
    "cidr": _cidr,
    "mac": _MAC.matches,
    "hostname": lambda text: len(text) <= 255 and _HOSTNAME.matches(text),
    "email": _EMAIL.matches,
    "uri": _uri,
    "duration": _DURATION.matches,
}


def format_ok(name: str, text: str) -> bool:
    check = FORMATS.get(name)
    return check is None or check(text)
