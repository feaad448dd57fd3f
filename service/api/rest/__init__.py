"""The REST adapter (aiohttp): routes described by openapi.yaml, problem+json errors, SSE."""

from service.api.rest.app import create_rest_app
from service.api.rest.listener import ListenerSettings, rest_runner
from service.api.rest.streams import SSE_STREAMS, StreamSettings, close_streams

__all__ = ["SSE_STREAMS", "ListenerSettings", "StreamSettings", "close_streams", "create_rest_app", "rest_runner"]
