"""The gateway's REST API over aiohttp: JSON calls and response streams, with every
transport failure and every problem+json answer turned into a one-line ``CtlError``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from service.client.download import connect_failure_reason
from service.ctl.connection import Connection
from service.ctl.errors import ApiError, CtlError, one_line

CONNECT_SECONDS = 10.0
READ_SECONDS = 60.0
MAX_PROBLEM_BYTES = 64 << 10
USER_AGENT = "dvpctl"


class StreamBroken(CtlError):
    """A response stream ended or broke before its natural end: the caller may resume."""


def segment(value: str) -> str:
    """One path segment, percent-encoded (names come from the command line)."""
    return quote(value, safe="")


def namespaced(namespace: str, *rest: str) -> str:
    return "/v1/namespaces/" + segment(namespace) + "".join(rest)


class RestClient:
    """A session to one gateway; ``async with RestClient(connection) as api: ...``."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> RestClient:
        context: ssl.SSLContext | bool = True
        if self.connection.ca_file is not None:
            try:
                context = ssl.create_default_context(cafile=str(self.connection.ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise CtlError(f"cannot load the CA file {self.connection.ca_file}: {exc}") from None
        headers = {"Authorization": f"Bearer {self.connection.token}", "User-Agent": USER_AGENT}
        self._session = aiohttp.ClientSession(
            headers=headers, connector=aiohttp.TCPConnector(ssl=context),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_SECONDS, sock_read=READ_SECONDS))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use RestClient as an async context manager"
        return self._session

    def url(self, path: str) -> URL:
        return URL(self.connection.server + path, encoded=True)

    # -- JSON calls --------------------------------------------------------------------------
    async def get(self, path: str, params: Mapping[str, object] | None = None) -> Any:
        return await self.call("GET", path, params=params)

    async def post(self, path: str, body: Mapping[str, Any] | None = None,
                   headers: Mapping[str, str] | None = None) -> Any:
        return await self.call("POST", path, body=body, headers=headers)

    async def delete(self, path: str, headers: Mapping[str, str] | None = None) -> Any:
        return await self.call("DELETE", path, headers=headers)

    async def call(self, method: str, path: str, *, params: Mapping[str, object] | None = None,
                   body: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None) -> Any:
        with self.translate_errors():
            async with self.session.request(method, self.url(path), params=query(params), json=body,
                                            headers=dict(headers or {})) as response:
                await raise_for_problem(response)
                text = await response.text()
        try:
            return json.loads(text) if text else None
        except ValueError:
            raise CtlError(f"{method} {path}: the gateway answered something other than JSON") from None

    # -- streams -----------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def stream(self, method: str, path: str, *, params: Mapping[str, object] | None = None,
                     headers: Mapping[str, str] | None = None,
                     body: Mapping[str, Any] | None = None) -> AsyncIterator[aiohttp.ClientResponse]:
        """A 2xx response whose body is read as it comes (no read timeout: watches idle)."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_SECONDS, sock_read=None)
        with self.translate_errors(streaming=True):
            async with self.session.request(method, self.url(path), params=query(params), json=body,
                                            headers=dict(headers or {}), timeout=timeout) as response:
                await raise_for_problem(response)
                yield response

    @contextlib.contextmanager
    def translate_errors(self, *, streaming: bool = False) -> Iterator[None]:
        server = self.connection.server
        try:
            yield
        except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientConnectorSSLError) as exc:
            raise CtlError(f"TLS to {server} failed: {exc}") from None
        except aiohttp.ClientConnectorError as exc:
            raise CtlError(f"cannot connect to {server}: {connect_failure_reason(exc)}") from None
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
            if streaming:
                raise StreamBroken(f"the stream from {server} broke off: {one_line(str(exc)) or 'disconnected'}") \
                    from None
            raise CtlError(f"the connection to {server} broke off") from None
        except TimeoutError:
            raise CtlError(f"no answer from {server} within {READ_SECONDS:.0f}s") from None
        except aiohttp.InvalidURL as exc:
            raise CtlError(f"invalid URL {exc}") from None
        except aiohttp.ClientError as exc:
            raise CtlError(f"talking to {server} failed: {type(exc).__name__}: {exc}") from None


def query(params: Mapping[str, object] | None) -> dict[str, str]:
    """Query parameters without the empty ones (the gateway rejects what it does not know)."""
    out: dict[str, str] = {}
    for key, value in (params or {}).items():
        if value is None or value == "" or value is False:
            continue
        out[key] = "true" if value is True else str(value)
    return out


async def raise_for_problem(response: aiohttp.ClientResponse) -> None:
    if 200 <= response.status < 300:
        return
    text = ""
    with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, UnicodeDecodeError):
        text = (await response.content.read(MAX_PROBLEM_BYTES)).decode()
    problem: Any = None
    with contextlib.suppress(ValueError):
        problem = json.loads(text) if text else None
    if not isinstance(problem, dict):
        problem = {"detail": one_line(text, 200) if text and "json" not in response.content_type else
                   f"the gateway answered HTTP {response.status} {response.reason or ''}".strip()}
    raise ApiError(response.status, problem)
