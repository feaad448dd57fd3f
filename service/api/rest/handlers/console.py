"""/console: the web console's files, and which capabilities this gateway serves.

Every file is read once, when the application is built, from a fixed directory: a path
names one of those files or nothing (no traversal, no file system access per request).
Responses carry a Content-Security-Policy that allows only this origin's own scripts,
styles and API calls, with no inline script and no framing.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from service.api.rest.context import GATEWAY
from service.core.contract import METHODS

CONSOLE_FILES = web.AppKey("console_files", dict[str, "ConsoleFile"])
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml",
          ".json": "application/json", ".png": "image/png"}


@dataclass(frozen=True)
class ConsoleFile:
    body: bytes
    content_type: str
    etag: str


def load_console_files(directory: Path) -> dict[str, ConsoleFile]:
    """``relative/path`` -> file, for every file under ``directory`` of a known type."""
    files: dict[str, ConsoleFile] = {}
    for path in sorted(directory.rglob("*")):
        content_type = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
        if not path.is_file() or path.suffix not in _TYPES or content_type is None:
            continue
        body = path.read_bytes()
        files[path.relative_to(directory).as_posix()] = ConsoleFile(
            body, content_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
    return files


def _secured(response: web.StreamResponse) -> web.StreamResponse:
    response.headers.update(SECURITY_HEADERS)
    return response


async def console_root(request: web.Request) -> web.StreamResponse:
    """/console -> /console/ (relative URLs in the page resolve under it)."""
    raise web.HTTPPermanentRedirect("/console/", headers=SECURITY_HEADERS)


async def console_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info.get("path", "") or "index.html"
    found = request.app[CONSOLE_FILES].get(name)
    if found is None:
        raise web.HTTPNotFound()
    headers = {"ETag": found.etag, "Cache-Control": "no-cache"}   # revalidated: a new release shows at once
    if request.headers.get("If-None-Match") == found.etag:
        return _secured(web.Response(status=304, headers=headers))
    charset = "utf-8" if found.content_type.startswith("text/") or found.content_type.endswith(("json", "xml")) \
        else None
    return _secured(web.Response(body=found.body, content_type=found.content_type, charset=charset, headers=headers))


async def console_capabilities(request: web.Request) -> web.StreamResponse:
    """Which contract methods this gateway answers: the console shows the others as not yet
    available instead of offering a button that can only fail."""
    served = request.app[GATEWAY].served_methods()
    body = json.dumps({"methods": {method.name: method.name in served for method in METHODS}})
    return _secured(web.Response(text=body, content_type="application/json",
                                 headers={"Cache-Control": "no-cache"}))
