"""The metrics listener: ``GET /metrics`` in Prometheus' text format, on a port of its
own (never on the API's doors, so a scraper needs no token and the API no exception).
Served by aiohttp on the gateway's event loop: a scrape renders a few hundred samples
from memory (well under a millisecond) and awaits nothing."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

REGISTRY = web.AppKey("registry", CollectorRegistry)


async def _metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def start_metrics_listener(registry: CollectorRegistry, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Listening on ``host:port`` (0: a free port): the runner (``cleanup()`` stops it)
    and the bound port. OSError when the port cannot be bound."""
    app = web.Application()
    app[REGISTRY] = registry
    app.router.add_get("/metrics", _metrics)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = next((int(address[1]) for address in runner.addresses if isinstance(address, tuple)), 0)
    return runner, bound
