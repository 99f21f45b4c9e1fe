"""The gateway's end of worker tunnels: requests to workers nobody can dial, over the WebSocket they dialled.

One ``Tunnel`` per worker id (a newer signed one replaces it). The proxy and
the prober call ``TunnelHub.request`` and read a ``TunnelResponse`` the way
they read an aiohttp response. The worker's frames are checked one by one
(``routing.tunnel_wire``); a frame that breaks the protocol closes that
tunnel, and every request on it fails like a dropped connection (before the
first byte: the next worker is tried). Pings measure the tunnel's round trip,
which is the worker's RTT for routing; a tunnel whose pongs stop is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any

from aiohttp import WSMsgType, web
from multidict import CIMultiDict, CIMultiDictProxy

from routing import tunnel_wire as wire
from routing.errors import InvalidRequest

log = logging.getLogger(__name__)

MISSED_PINGS = 3  # unanswered for this many intervals: the tunnel is dead


class TunnelBroken(Exception):
    """The tunnel closed under a request, or the worker said the request failed."""


class NoTunnel(TunnelBroken):
    """The worker has no tunnel open to this gateway (it cannot be reached)."""


class TunnelResponse:
    """One request's answer as it arrives over a tunnel; read like an ``aiohttp.ClientResponse``.

    The worker may send at most one window of body the reader has not taken; what the reader
    takes is granted back to it, so a slow client holds one window here, never more."""

    def __init__(self, tunnel: Tunnel, stream: int):
        self._tunnel = tunnel
        self.stream = stream
        self.status = 0
        self.headers: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())
        self.head: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._chunks: deque[bytes] = deque()
        self.unread = 0  # bytes received, not yet read
        self.unacknowledged = 0  # bytes received the worker has not been granted back
        self._taken = 0  # bytes read since the last grant
        self._arrived = asyncio.Event()
        self.ended = False
        self._error = ""
        self._closed = False

    @property
    def content(self) -> TunnelResponse:
        return self

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "application/octet-stream").partition(";")[0].strip().lower()

    @property
    def content_length(self) -> int | None:
        text = self.headers.get("Content-Length", "")
        return int(text) if text.isascii() and text.isdigit() and len(text) < 16 else None

    def received(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self.unread += len(chunk)
        self.unacknowledged += len(chunk)
        self._arrived.set()

    def finish(self, error: str = "") -> None:
        self.ended, self._error = True, error
        if not self.head.done():
            self.head.set_exception(TunnelBroken(error or "the worker ended the request before its head"))
        self._arrived.set()

    async def readany(self) -> bytes:
        """The next bytes of the body; ``b""`` at its end; TunnelBroken if it broke off."""
        while not self._chunks:
            if self.ended:
                if self._error:
                    raise TunnelBroken(self._error)
                return b""
            self._arrived.clear()
            await self._arrived.wait()
        chunk = self._chunks.popleft()
        self.unread -= len(chunk)
        self._taken += len(chunk)
        if self._taken >= wire.WINDOW // 2 and not self.ended:
            self._tunnel.send(wire.Credit(self.stream, self._taken))
            self.unacknowledged -= self._taken
            self._taken = 0
        return chunk

    async def iter_any(self) -> AsyncIterator[bytes]:
        while chunk := await self.readany():
            yield chunk

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.iter_any()])

    def close(self) -> None:
        """Done with it: a request still running on the worker is cancelled there (the client left)."""
        if self._closed:
            return
        self._closed = True
        self._chunks.clear()
        self.unread = 0
        self._tunnel.forget(self.stream, cancel=not self.ended)

    async def __aenter__(self) -> TunnelResponse:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Tunnel:
    def __init__(self, worker_id: str, ws: web.WebSocketResponse):
        self.worker_id = worker_id
        self._ws = ws
        self._streams: dict[int, TunnelResponse] = {}
        self._ids = itertools.count(1)
        self._issued = 0
        self._outbox: asyncio.Queue[wire.Frame | None] = asyncio.Queue()  # None: close the WebSocket
        self.closed = False
        self._pings: dict[int, float] = {}

    @property
    def streams(self) -> int:
        return len(self._streams)

    def buffered(self) -> int:
        """Body bytes held here for readers that have not taken them."""
        return sum(s.unread for s in self._streams.values())

    def send(self, frame: wire.Frame) -> None:
        if not self.closed:
            self._outbox.put_nowait(frame)

    async def request(self, method: str, path: str, headers: wire.Headers, body: bytes) -> TunnelResponse:
        if self.closed:
            raise NoTunnel(f"the tunnel of worker {self.worker_id} is closed")
        if len(self._streams) >= wire.MAX_STREAMS:
            raise TunnelBroken(f"the tunnel of worker {self.worker_id} has {wire.MAX_STREAMS} requests open")
        if len(body) > wire.MAX_REQUEST_BODY:
            raise NoTunnel(f"a body over the tunnel's {wire.MAX_REQUEST_BODY}-byte limit")
        stream = self._issued = next(self._ids)
        response = self._streams[stream] = TunnelResponse(self, stream)
        self.send(wire.Request(stream, method, path, headers, body))
        try:
            await asyncio.shield(response.head)
        except BaseException:
            response.close()
            raise
        return response

    def forget(self, stream: int, *, cancel: bool) -> None:
        if self._streams.pop(stream, None) is not None and cancel:
            self.send(wire.Cancel(stream))

    async def run(self, ping_interval_s: float, on_rtt: Callable[[float, float], None]) -> None:
        """Read the worker's frames until the tunnel closes; write ours and ping beside it."""
        loop = asyncio.get_running_loop()
        writer = asyncio.create_task(self._write())
        pinger = asyncio.create_task(self._ping(ping_interval_s))
        try:
            async for message in self._ws:
                if message.type is not WSMsgType.BINARY:
                    raise InvalidRequest(f"a {message.type.name} message in a tunnel (frames are binary)")
                frame = wire.decode(message.data, wire.FROM_WORKER)
                if isinstance(frame, wire.Pong):
                    sent = self._pings.pop(frame.sequence, None)
                    if sent is not None:
                        now = loop.time()
                        on_rtt(now - sent, now)
                else:
                    self._deliver(frame)
        except InvalidRequest as exc:
            log.warning("worker %s broke the tunnel protocol (%s): tunnel closed", self.worker_id, exc.message)
        finally:
            self.close()
            for task in (writer, pinger):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._ws.close()

    def close(self) -> None:
        """Fail every request on it (each fails over, or ends its stream with an error event), and hang up."""
        if self.closed:
            return
        for response in self._streams.values():
            response.finish("the worker's tunnel closed")
        self._streams.clear()
        self._outbox.put_nowait(None)
        self.closed = True

    def _deliver(self, frame: Any) -> None:
        stream = frame.stream
        response = self._streams.get(stream)
        if response is None:
            if stream > self._issued:
                raise InvalidRequest(f"a frame for stream {stream}, which was never opened")
            return  # a stream we closed (cancelled): its last frames were already on their way
        match frame:
            case wire.Head() if not response.head.done():
                response.status = frame.status
                response.headers = CIMultiDictProxy(CIMultiDict(frame.headers))
                response.head.set_result(None)
            case wire.Answer() if not response.head.done():
                response.status = frame.status
                response.headers = CIMultiDictProxy(CIMultiDict(frame.headers))
                response.head.set_result(None)
                if frame.body:
                    response.received(frame.body)
                response.finish()
                del self._streams[stream]
            case wire.Data() if response.head.done():
                if response.unacknowledged + len(frame.chunk) > wire.WINDOW:
                    raise InvalidRequest(f"stream {stream} sent past its window")
                response.received(frame.chunk)
            case wire.End() if response.head.done():
                response.finish()
                del self._streams[stream]
            case wire.Failed():
                response.finish(f"the worker could not serve the request: {frame.message}")
                del self._streams[stream]
            case _:
                raise InvalidRequest(f"a {type(frame).__name__} frame out of order on stream {stream}")

    async def _write(self) -> None:
        while (frame := await self._outbox.get()) is not None:
            await self._ws.send_bytes(wire.encode(frame))
        await self._ws.close()  # the reader's loop ends with it

    async def _ping(self, interval_s: float) -> None:
        loop = asyncio.get_running_loop()
        for sequence in itertools.count():
            now = loop.time()
            if self._pings and min(self._pings.values()) < now - MISSED_PINGS * interval_s:
                # The worker, or the path to it, is gone (a NAT forgot the mapping): TCP may not notice for minutes.
                log.warning("worker %s stopped answering pings: tunnel closed", self.worker_id)
                self.close()
                return
            self._pings[sequence] = now
            self.send(wire.Ping(sequence))
            await asyncio.sleep(interval_s)


class TunnelHub:
    """Every worker's open tunnel, by worker id."""

    def __init__(self, *, ping_interval_s: float, on_rtt: Callable[[str, float, float], None]):
        """``on_rtt(worker_id, rtt_s, now)``: a ping's round trip, on the loop's clock."""
        self._tunnels: dict[str, Tunnel] = {}
        self._ping_interval_s = ping_interval_s
        self._on_rtt = on_rtt

    def __contains__(self, worker_id: str) -> bool:
        return worker_id in self._tunnels

    def get(self, worker_id: str) -> Tunnel | None:
        return self._tunnels.get(worker_id)

    async def request(
        self, worker_id: str, method: str, path: str, headers: wire.Headers, body: bytes
    ) -> TunnelResponse:
        tunnel = self._tunnels.get(worker_id)
        if tunnel is None:
            raise NoTunnel(f"worker {worker_id} has no tunnel open to this gateway")
        return await tunnel.request(method, path, headers, body)

    async def serve(self, request: web.Request, worker_id: str) -> web.WebSocketResponse:
        """Carry requests to ``worker_id`` over this WebSocket (its open was authenticated by the caller)."""
        ws = web.WebSocketResponse(max_msg_size=wire.MAX_WORKER_FRAME, autoping=True)
        await ws.prepare(request)
        tunnel = Tunnel(worker_id, ws)
        replaced = self._tunnels.get(worker_id)
        self._tunnels[worker_id] = tunnel
        if replaced is not None:
            log.info("worker %s opened a new tunnel: the old one is closed", worker_id)
            replaced.close()
        log.info("worker %s connected through a tunnel from %s", worker_id, request.remote or "?")
        try:
            await tunnel.run(self._ping_interval_s, lambda rtt, now: self._on_rtt(worker_id, rtt, now))
        finally:
            if self._tunnels.get(worker_id) is tunnel:
                del self._tunnels[worker_id]
                log.info("worker %s's tunnel closed", worker_id)
        return ws

    def drop(self, worker_id: str) -> None:
        """Close a worker's tunnel (it left, went silent, or was revoked)."""
        tunnel = self._tunnels.pop(worker_id, None)
        if tunnel is not None:
            tunnel.close()

    def close_all(self) -> None:
        for worker_id in list(self._tunnels):
            self.drop(worker_id)
