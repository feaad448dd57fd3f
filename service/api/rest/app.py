"""``create_rest_app``: the aiohttp application of the REST door."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from service.api.rest.body import MAX_BODY_BYTES
from service.api.rest.context import GATEWAY, TELEMETRY
from service.api.rest.handlers import console
from service.api.rest.handlers.health import OPENAPI_DOCUMENT
from service.api.rest.listener import LISTENER, ListenerSettings
from service.api.rest.middleware import authentication, errors_and_request_id
from service.api.rest.routes import add_routes
from service.api.rest.streams import SSE_STREAMS, STREAM_SETTINGS, StreamSettings, close_streams
from service.core.facade import GatewayFacade
from service.observability.telemetry import Telemetry

# pageToken and labelSelector may each be 4096 characters; percent-encoded UTF-8 takes up
# to 12 bytes a character, beyond aiohttp's 8 KiB default (which answers in text/plain).
MAX_REQUEST_LINE_BYTES = 128 * 1024


def create_rest_app(gateway: GatewayFacade, *, openapi_path: Path,
                    stream_settings: StreamSettings | None = None,
                    listener: ListenerSettings | None = None,
                    telemetry: Telemetry | None = None,
                    console_dir: Path | None = None) -> web.Application:
    """The REST application. Open event streams are tracked in ``app[SSE_STREAMS]``;
    ``close_streams(app)`` ends them (also run on the application's shutdown). Serve it
    with ``rest_runner`` for the listener's header timeout; the idle timeout and the body
    limits hold with any runner. With ``console_dir`` the web console is served at /console/."""
    listener = listener or ListenerSettings()
    # Each operation checks its own, smaller body limit (service.api.rest.body); this is
    # only aiohttp's backstop for request.read(), which the handlers do not use.
    app = web.Application(middlewares=[errors_and_request_id, authentication], client_max_size=MAX_BODY_BYTES,
                          handler_args={"max_line_size": MAX_REQUEST_LINE_BYTES,
                                        "keepalive_timeout": listener.idle_timeout,
                                        # A compressed body is refused (415), never inflated:
                                        # no bomb to defuse, no decoder error to turn into a 400.
                                        "auto_decompress": False})
    app[GATEWAY] = gateway
    app[TELEMETRY] = telemetry or Telemetry.off()
    app[LISTENER] = listener
    app[OPENAPI_DOCUMENT] = openapi_path.read_bytes()
    app[STREAM_SETTINGS] = stream_settings or StreamSettings()
    app[SSE_STREAMS] = set()
    add_routes(app.router)
    if console_dir is not None:
        app[console.CONSOLE_FILES] = console.load_console_files(console_dir)
        app.router.add_get("/console", console.console_root, name="ConsoleRedirect")
        app.router.add_get("/console/capabilities.json", console.console_capabilities, name="ConsoleCapabilities")
        app.router.add_get("/console/{path:.*}", console.console_file, name="ConsoleFile")
    app.on_shutdown.append(close_streams)
    return app
