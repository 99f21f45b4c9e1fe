"""An aiohttp application called in-process, its answer sent as tunnel frames (``routing.tunnel_wire``).

The worker's end of a tunnel serves its own API this way: a tunnel's request
goes to the API and its answer back in frames, never more than the stream's
window ahead of the gateway's grants, so a slow client backs up into the
API's writes, not into memory. A cancel cancels the task that serves the
request: the API's handler sees ``CancelledError``, as when an HTTP client
leaves, and stops generating. No second HTTP hop over loopback (its client,
its sockets, its parse), which cost about as much as the tunnel itself, and
no local port the tunnel depends on. A gateway sends its canaries through
its own application the same way (``gateway/canaries.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http import HttpVersion11
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from routing import tunnel_wire as wire

Send = Callable[[wire.Frame], Awaitable[None]]

# What goes back: the answer's own headers, not the local server's.
ANSWER_HEADERS = ("Content-Type", "Content-Length", "Cache-Control", "Retry-After", "x-request-id")


class Window:
    """Body bytes this stream may still send before the gateway grants more."""

    def __init__(self) -> None:
        self._left = wire.WINDOW
        self._more = asyncio.Event()

    def grant(self, amount: int) -> None:
        self._left = min(wire.WINDOW, self._left + amount)
        self._more.set()

    async def take(self, amount: int) -> None:
        while self._left < amount:
            self._more.clear()
            await self._more.wait()
        self._left -= amount


def answer_headers(headers: CIMultiDict[str]) -> tuple[tuple[str, str], ...]:
    return tuple((name, headers[name]) for name in ANSWER_HEADERS if name in headers)


class _NoConnection(BaseProtocol):
    """What a request asks of its connection, for one that came over a tunnel: no socket, no TLS, no peer.

    (The request's body is already whole, so reading is never paused.)"""

    ssl_context = None
    peername = None
    sockname = None
    max_field_size = 8190
    max_headers = 128


class _TunnelWriter(AbstractStreamWriter):
    """The response writer of a request served in-process: what the handler writes goes out as frames.

    The head waits for the body: a short whole answer (most non-streaming ones) is one frame, not three."""

    def __init__(self, stream: int, window: Window, send: Send):
        self._stream, self._window, self._send = stream, window, send
        self._status = 0
        self._headers: tuple[tuple[str, str], ...] = ()
        self._held: bytearray | None = None  # a short answer's body, until the end
        self.ended = False

    async def write_headers(self, status_line: str, headers: CIMultiDict[str]) -> None:
        self._status = int(status_line.split(" ", 2)[1])
        self._headers = answer_headers(headers)
        length = headers.get("Content-Length", "")
        if length.isdigit() and int(length) <= wire.MAX_CHUNK:
            self._held = bytearray()
        else:
            await self._send(wire.Head(self._stream, self._status, self._headers))

    async def write(self, chunk: bytes | bytearray | memoryview) -> None:
        self.output_size += len(chunk)
        if self._held is not None:
            self._held += chunk
            return
        for start in range(0, len(chunk), wire.MAX_CHUNK):
            piece = bytes(chunk[start : start + wire.MAX_CHUNK])
            await self._window.take(len(piece))
            await self._send(wire.Data(self._stream, piece))

    async def write_eof(self, chunk: bytes = b"") -> None:
        if self.ended:
            return
        await self.write(chunk)
        self.ended = True
        if self._held is not None:
            await self._send(wire.Answer(self._stream, self._status, self._headers, bytes(self._held)))
        else:
            await self._send(wire.End(self._stream))

    async def drain(self) -> None:
        """Every write above has already waited for its window."""

    def enable_compression(self, encoding: str = "deflate", strategy: int | None = None) -> None:
        """The tunnel carries bodies as they are (the gateway asked for no encoding)."""

    def enable_chunking(self) -> None:
        """Frames are the tunnel's chunks."""


class InProcessApi:
    """An application, called in-process for each request (a tunnelled one, a canary).

    This leans on two of aiohttp's own seams, ``Application._make_request``
    and ``Application._handle`` (what its HTTP server calls for each parsed
    request), so routing, middlewares and ``on_response_prepare`` run exactly
    as for a request over HTTP; ``tests/routing/test_in_process.py`` holds
    them to that.
    """

    def __init__(self, app: web.Application):
        self._app = app

    async def serve(
        self,
        request: wire.Request,
        headers: CIMultiDict[str],
        window: Window,
        send: Send,
        marks: Mapping[web.RequestKey[Any], Any] | None = None,
    ) -> None:
        """Answer ``request`` (hop headers removed: ``headers``) in frames through ``send``. ``marks`` go on the
        request before any middleware sees it: what only this process can say about it (a gateway's canary)."""
        loop = asyncio.get_running_loop()
        connection = _NoConnection(loop)
        body = StreamReader(connection, 2**16, loop=loop)
        if request.body:
            body.feed_data(request.body)
        body.feed_eof()
        raw = tuple((k.encode(), v.encode()) for k, v in headers.items())
        message = RawRequestMessage(
            request.method,
            request.path,
            HttpVersion11,
            CIMultiDictProxy(headers),
            raw,
            False,  # should_close
            None,  # compression
            False,  # upgrade
            False,  # chunked
            URL.build(path=request.path, encoded=True),
        )
        writer = _TunnelWriter(request.stream, window, send)
        task = asyncio.current_task()
        assert task is not None
        web_request = self._app._make_request(message, body, connection, writer, task)  # type: ignore[arg-type]
        for key, value in (marks or {}).items():
            web_request[key] = value
        try:
            response = await self._app._handle(web_request)
        except web.HTTPException as exc:  # as aiohttp's server does: the exception is the answer
            response = exc
        await response.prepare(web_request)
        await response.write_eof()
        if not writer.ended:  # (a response that was prepared elsewhere cannot leave the stream open)
            await writer.write_eof()
