"""The worker's end of a tunnel: serve a gateway over a WebSocket this worker dialled out.

For a worker nobody can dial (home NAT): once registered with a gateway, it
opens ``GET /internal/v1/workers/{id}/tunnel`` there, signed with its own key,
and serves every request that arrives over it with its own API (in-process:
``routing/in_process.py``), with the gateway's headers (the gateway's
per-worker token still opens the API, exactly as over a direct connection).
Answers go back in chunks, never more than the window the gateway has
granted per stream, so a slow client backs up into the API's writes, not
into memory. A cancel stops that request (the API sees it cancelled and
stops generating). A dropped tunnel is dialled again with backoff and jitter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from functools import partial

import aiohttp
from multidict import CIMultiDict

from routing import tunnel_wire as wire
from routing.errors import InvalidRequest
from routing.in_process import InProcessApi, Send, Window
from routing.signing import Signer

log = logging.getLogger(__name__)

# Not passed between the gateway's connection and the local one: they describe a hop, not the request.
_HOP_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "host", "content-length", "upgrade"})
# Requests a gateway may make of this worker: its API, its health and its metrics.
_SERVED_PREFIXES = ("/v1/", "/health", "/metrics")


class TunnelClient:
    """One gateway's tunnel: dialled once this worker is registered there, and again whenever it drops."""

    def __init__(
        self,
        gateway: str,
        worker_id: str,
        signer: Signer,
        session: aiohttp.ClientSession,
        api: InProcessApi,
        *,
        heartbeat_s: float = 5.0,
        rng: random.Random | None = None,
        known_elsewhere: bool = False,
    ):
        # The gateway knows this worker from Consul, not from registering: a 404 means "not yet", not "forgot".
        self._known_elsewhere = known_elsewhere
        self._url = gateway.rstrip("/") + wire.tunnel_path(worker_id)
        self._path = wire.tunnel_path(worker_id)
        self._signer = signer
        self._session = session
        self._api = api
        self._heartbeat_s = heartbeat_s
        self._rng = rng or random.Random()
        self.registered = asyncio.Event()  # set by the announcer: the gateway knows this worker's key
        self.connected = asyncio.Event()

    async def run(self) -> None:
        backoff = 0.25
        while True:
            await self.registered.wait()
            try:
                headers = self._signer.headers("GET", self._path, b"", time.time())
                async with self._session.ws_connect(
                    self._url,
                    headers=headers,
                    heartbeat=self._heartbeat_s,
                    max_msg_size=wire.MAX_GATEWAY_FRAME,
                    timeout=aiohttp.ClientWSTimeout(ws_close=5),
                ) as ws:
                    log.info("tunnel to %s open", self._url)
                    backoff = 0.25
                    self.connected.set()
                    await self._serve(ws)
                    log.warning("tunnel to %s closed (%s); dialling again", self._url, ws.close_code)
            except aiohttp.WSServerHandshakeError as exc:
                if exc.status == 404 and not self._known_elsewhere:  # it forgot us (restarted): wait to register
                    self.registered.clear()
                log.warning("gateway refused the tunnel (%s %s)", exc.status, exc.message)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                log.warning("tunnel to %s failed (%s); dialling again", self._url, type(exc).__name__)
            finally:
                self.connected.clear()
            await asyncio.sleep(backoff * self._rng.uniform(0.5, 1.5))
            backoff = min(backoff * 2, 30.0)

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        lock = asyncio.Lock()  # one frame at a time on the socket; waiters go in turn, so streams interleave
        streams: dict[int, tuple[asyncio.Task[None], Window]] = {}

        async def send(frame: wire.Frame) -> None:
            async with lock:
                await ws.send_bytes(wire.encode(frame))

        try:
            async for message in ws:
                if message.type is not aiohttp.WSMsgType.BINARY:
                    if message.type is aiohttp.WSMsgType.ERROR:
                        return
                    raise InvalidRequest(f"a {message.type.name} message in the tunnel")
                frame = wire.decode(message.data, wire.FROM_GATEWAY)
                match frame:
                    case wire.Ping():
                        await send(wire.Pong(frame.sequence))
                    case wire.Request() if frame.stream in streams or len(streams) >= wire.MAX_STREAMS:
                        await send(wire.Failed(frame.stream, "too many requests open on this tunnel"))
                    case wire.Request():
                        window = Window()
                        task = asyncio.create_task(self._forward(frame, window, send))
                        streams[frame.stream] = (task, window)
                        task.add_done_callback(partial(_forget, streams, frame.stream))
                    case wire.Cancel() if frame.stream in streams:
                        streams[frame.stream][0].cancel()
                    case wire.Credit() if frame.stream in streams:
                        streams[frame.stream][1].grant(frame.amount)
        except InvalidRequest as exc:
            log.warning("the gateway broke the tunnel protocol (%s): closing it", exc.message)
        finally:
            tasks = [task for task, _ in streams.values()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await ws.close()

    async def _forward(self, request: wire.Request, window: Window, send: Send) -> None:
        """Pass one request to this worker's own API and stream its answer back."""
        if not request.path.startswith(_SERVED_PREFIXES):
            await send(wire.Failed(request.stream, f"this worker does not serve {request.path}"))
            return
        headers = CIMultiDict((name, value) for name, value in request.headers if name.lower() not in _HOP_HEADERS)
        try:
            await self._api.serve(request, headers, window, send)
        except Exception as exc:  # the API's middleware answers errors; this got past it (mid-stream, say)
            if not isinstance(exc, (aiohttp.ClientError, ConnectionError)):
                log.exception("a tunnelled request to %s failed", request.path)
            # The gateway ends the stream on it (never left waiting); if the tunnel itself went, nobody is left.
            with contextlib.suppress(aiohttp.ClientError, ConnectionError):
                await send(wire.Failed(request.stream, "the worker's API failed"))


def _forget(streams: dict[int, tuple[asyncio.Task[None], Window]], stream: int, _: asyncio.Task[None]) -> None:
    streams.pop(stream, None)
