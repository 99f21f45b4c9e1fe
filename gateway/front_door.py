"""The gateway's listening socket, guarded against clients that hold connections without using them.

aiohttp closes an idle keep-alive connection only after a response, and never
a connection that has not finished its first request head, so idle and
slowloris sockets could pile up until the process runs out of descriptors and
real traffic fails. Here:

- a connection must deliver its first request head within ``header_timeout_s``;
  between requests aiohttp's keep-alive timer closes it (``keepalive_timeout_s``);
- at most ``max_connections_per_client`` connections per client address and
  ``max_connections`` in all; at either cap the oldest *idle* connection is
  closed to make room, and only if none is idle is the new one refused;
- aiohttp's own protocol errors (oversized or too many headers, a bad request
  line) are answered in OpenAI's JSON error shape, not plain text.

The request body's own timeout is the handler's (``gateway.api``).
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from routing.errors import error_body

log = logging.getLogger(__name__)

LINGER_S = 1.0
_CODES = {400: "invalid_request", 413: "request_too_large", 431: "request_header_fields_too_large"}


@dataclass(frozen=True, slots=True)
class DoorLimits:
    header_timeout_s: float
    keepalive_timeout_s: float
    max_connections: int
    max_connections_per_client: int


def descriptor_budget() -> int:
    """Raise the soft descriptor limit to the hard one; half of it may be client connections.

    The other half is left for what each request opens upstream, and for files.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return max(16, min(soft, 1 << 20) // 2)


class FrontDoor:
    """Tracks every client connection of one listening socket and enforces ``DoorLimits``."""

    def __init__(self, server: web.Server, limits: DoorLimits, **handler_kwargs: Any):
        self._server = server
        self.limits = limits
        self._handler_kwargs = handler_kwargs
        self._open: OrderedDict[_GuardedHandler, None] = OrderedDict()  # oldest first
        self._per_client: dict[str, int] = {}
        self.refused = 0  # for the warning's count

    def protocol(self) -> RequestHandler:
        """The protocol factory for ``loop.create_server``."""
        return _GuardedHandler(
            self,
            self._server,
            loop=asyncio.get_running_loop(),
            keepalive_timeout=self.limits.keepalive_timeout_s,
            # After an answer given before the body was read (408, 413), read the rest for at
            # most this long so the client sees the answer, not aiohttp's 10 s.
            lingering_time=LINGER_S,
            **self._handler_kwargs,
        )

    def admit(self, handler: _GuardedHandler) -> bool:
        """Make room for a new connection if a cap is reached; False if there is none to make."""
        limits = self.limits
        at_client_cap = self._per_client.get(handler.client, 0) >= limits.max_connections_per_client
        if at_client_cap and not self._evict_idle(handler.client):
            return self._refuse(handler, "per-client")
        if len(self._open) >= limits.max_connections and not self._evict_idle(None):
            return self._refuse(handler, "total")
        self._open[handler] = None
        self._per_client[handler.client] = self._per_client.get(handler.client, 0) + 1
        return True

    def forget(self, handler: _GuardedHandler) -> None:
        if handler not in self._open:
            return  # refused, or already evicted
        del self._open[handler]
        left = self._per_client[handler.client] - 1
        if left:
            self._per_client[handler.client] = left
        else:
            del self._per_client[handler.client]

    def _evict_idle(self, client: str | None) -> bool:
        oldest_idle = next(
            (h for h in self._open if (client is None or h.client == client) and h.idle),
            None,
        )
        if oldest_idle is None:
            return False
        self.forget(oldest_idle)
        oldest_idle.close_now()
        return True

    def _refuse(self, handler: _GuardedHandler, which: str) -> bool:
        self.refused += 1
        if self.refused == 1 or self.refused % 1000 == 0:
            log.warning("connection cap (%s) reached with no idle connection to close: refused %d", which, self.refused)
        return False


class _GuardedHandler(RequestHandler):
    def __init__(self, door: FrontDoor, server: web.Server, **kwargs: Any):
        super().__init__(server, **kwargs)
        self._door = door
        self.client = ""
        self._deadline: asyncio.TimerHandle | None = None

    @property
    def idle(self) -> bool:
        """Between requests (or before its first): closing it loses no work."""
        return not self._request_in_progress

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self.client = str(peer[0]) if peer else ""
        super().connection_made(transport)
        if not self._door.admit(self):
            self.close_now()
            return
        self._deadline = self._loop.call_later(self._door.limits.header_timeout_s, self._first_head_due)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._door.forget(self)
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(exc)

    def _first_head_due(self) -> None:
        # No whole request head yet (nothing, or a slowloris trickle): close it.
        if self._request_count == 0:
            self.close_now()

    def close_now(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def handle_error(
        self, request: BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        """aiohttp's own errors (a malformed request, headers too large), in OpenAI's shape."""
        if status >= 500:
            log.error("error handling a request from %s", request.remote, exc_info=exc)
            body = error_body("The gateway hit an internal error.", "server_error", None, "internal_error")
        else:
            body = error_body(_clean(message or "bad request"), "invalid_request_error", None, _CODES.get(status))
        response = web.json_response(body, status=status)
        response.force_close()
        return response


def _clean(message: str) -> str:
    # aiohttp's messages quote what the client sent; keep them short and on one line.
    return " ".join(message.split())[:200]
