"""The DataExport block endpoint over HTTP: ``core.ports.BlockReader`` with aiohttp.

One client session for every export (connections are reused); each endpoint's TLS
context trusts exactly the CA its DataExport published (``status.ca``), never the
system store. The cluster's credentials authenticate the reads. Pieces are read with
``readexactly`` from a deep socket buffer, so each one is one contiguous ``bytes``
(hole detection and hashing work on whole pieces) and nothing is buffered beyond the
reader's limit: a slow caller slows the upstream read (TCP backpressure).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import aiohttp

from service.core.errors import ApiError, Code, not_found, unavailable
from service.core.ports import BlockEndpoint

Credentials = Callable[[], Awaitable[str | None]]   # the Authorization header value, or None

# How far aiohttp may read ahead of the consumer (per connection): bounds memory.
DEFAULT_READ_BUFFER = 256 << 10


def _gone(endpoint: BlockEndpoint, status: int) -> ApiError:
    error = not_found("DataExport", endpoint.url)
    error.reason = "EXPORT_GONE"
    error.message = f"the export is gone or expired (the exporter answered {status})"
    return error


def _refused(status: int, what: str) -> ApiError:
    if status == 409:
        return unavailable("the export is not ready yet", reason="EXPORT_NOT_READY")
    if status == 416:
        return ApiError(Code.OUT_OF_RANGE, "RANGE_NOT_SATISFIABLE", f"the exporter refused the range of {what}")
    return unavailable(f"the exporter answered {status} to {what}", reason="EXPORTER_UNAVAILABLE",
                       retry_after_seconds=2)


class UpstreamBlocks:
    def __init__(self, credentials: Credentials, *, client_cert: tuple[str, str] | None = None,
                 read_buffer: int = DEFAULT_READ_BUFFER, connect_timeout: float = 10.0,
                 read_timeout: float = 60.0, trace_configs: Sequence[aiohttp.TraceConfig] = ()) -> None:
        self._credentials = credentials
        self._trace_configs = list(trace_configs)
        self._client_cert = client_cert
        self._read_buffer = read_buffer
        self._timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_read=read_timeout)
        self._session: aiohttp.ClientSession | None = None
        self._contexts: dict[str, ssl.SSLContext] = {}

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout, read_bufsize=self._read_buffer,
                                                  auto_decompress=False, trace_configs=self._trace_configs or None)
        return self._session

    def _ssl(self, endpoint: BlockEndpoint) -> ssl.SSLContext | bool:
        if not endpoint.url.startswith("https:"):
            return False
        key = hashlib.sha256(endpoint.ca_pem or b"").hexdigest()
        context = self._contexts.get(key)
        if context is None:
            if endpoint.ca_pem:
                context = ssl.create_default_context(cadata=endpoint.ca_pem.decode("ascii", "replace"))
            else:
                context = ssl.create_default_context()
            if self._client_cert is not None:
                context.load_cert_chain(*self._client_cert)
            self._contexts[key] = context
        return context

    async def _headers(self, extra: dict[str, str]) -> dict[str, str]:
        authorization = await self._credentials()
        return {**extra, **({"Authorization": authorization} if authorization else {})}

    async def size(self, endpoint: BlockEndpoint) -> int:
        try:
            async with self._client().head(endpoint.url, headers=await self._headers({}),
                                           ssl=self._ssl(endpoint), allow_redirects=False) as response:
                if response.status in (404, 410):
                    raise _gone(endpoint, response.status)
                if response.status != 200 or response.content_length is None:
                    raise _refused(response.status, "a size request")
                return int(response.content_length)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise unavailable(f"the exporter cannot be reached ({type(exc).__name__})",
                              reason="EXPORTER_UNAVAILABLE") from None

    @contextlib.asynccontextmanager
    async def read(self, endpoint: BlockEndpoint, offset: int, length: int,
                   piece: int) -> AsyncIterator[AsyncIterator[bytes]]:
        headers = await self._headers({"Range": f"bytes={offset}-{offset + length - 1}"} if length else {})
        response: aiohttp.ClientResponse | None = None
        try:
            response = await self._client().get(endpoint.url, headers=headers, ssl=self._ssl(endpoint),
                                                 allow_redirects=False)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise unavailable(f"the exporter cannot be reached ({type(exc).__name__})",
                              reason="EXPORTER_UNAVAILABLE") from None
        try:
            if response.status in (404, 410):
                raise _gone(endpoint, response.status)
            if response.status not in (200, 206) or (length and response.status != 206 and offset):
                raise _refused(response.status, f"bytes {offset}-{offset + length - 1}")
            pieces = _pieces(response, length, piece)
            try:
                yield pieces
            finally:
                await pieces.aclose()   # its read-ahead is cancelled and collected here
        finally:
            # Closing (not releasing) drops the connection at once: an abandoned export
            # must not keep the exporter sending into a buffer nobody reads.
            response.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _pieces(response: aiohttp.ClientResponse, length: int, piece: int) -> AsyncGenerator[bytes, None]:
    """Exactly-``piece`` reads, one read ahead: the next piece arrives while the caller
    relays this one (upstream and downstream overlap; memory stays at two pieces)."""
    received = 0

    def read_next() -> asyncio.Task[bytes] | None:
        wanted = min(piece, length - received)
        return asyncio.ensure_future(response.content.readexactly(wanted)) if wanted > 0 else None

    ahead = read_next()
    try:
        while ahead is not None:
            data = await ahead
            received += len(data)
            ahead = read_next()
            yield data
    except asyncio.IncompleteReadError as exc:
        raise _interrupted(received + len(exc.partial), length) from None
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise _interrupted(received, length, type(exc).__name__) from None
    finally:
        if ahead is not None:
            ahead.cancel()
            with contextlib.suppress(BaseException):
                await ahead


def _interrupted(received: int, length: int, cause: Any = "early end of data") -> ApiError:
    return unavailable(f"the exporter connection broke after {received} of {length} bytes ({cause})",
                       reason="EXPORT_INTERRUPTED", retry_after_seconds=1)
