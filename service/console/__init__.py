"""The web console's files (``static/``): plain HTML, CSS and JavaScript modules, no build
step and nothing fetched from elsewhere. ``service.api.rest.handlers.console`` serves them
at ``/console/`` with a strict Content-Security-Policy; the pages speak only the public
REST API (``/v1``) and its Server-Sent Events, with the bearer token the person enters."""

from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"
