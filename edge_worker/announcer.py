"""Announcing this worker to gateways: register, heartbeat, deregister (signed msgpack).

One loop per gateway. It registers (retrying with a backoff no longer than
the heartbeat interval), then heartbeats its load. A heartbeat answered 404
means the gateway restarted and forgot us, and a failed one may mean the
same: either way the next step is to register again at once, so a restarted
gateway knows its workers again within one heartbeat interval. A gateway
that answers it cannot dial us (a home router) gets a tunnel: the worker
opens one and registers there again as tunnelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial

import aiohttp

from edge_worker.receipt_book import ReceiptBook
from routing.access_tokens import public_key_from_text
from routing.announce import (
    CONTENT_TYPE,
    REGISTER_PATH,
    Heartbeat,
    HeartbeatAnswer,
    Registration,
    heartbeat_path,
    pack,
    unpack_heartbeat_answer,
    unpack_welcome,
    worker_path,
)
from routing.errors import InvalidRequest
from routing.fleet import TUNNEL
from routing.identity import to_text
from routing.receipt import MAX_RECEIPTS_PER_HEARTBEAT
from routing.receipt import MAX_SEALED_CHARS as MAX_RECEIPT_CHARS
from routing.signing import Signer
from routing.supervise import start_supervised

log = logging.getLogger(__name__)

# A heartbeat answer holds at most this many receipts of at most this size, and a little framing.
MAX_ANSWER_BYTES = MAX_RECEIPTS_PER_HEARTBEAT * (MAX_RECEIPT_CHARS + 8) + 64


class Announcer:
    def __init__(
        self,
        gateways: tuple[str, ...],
        signer: Signer,
        session: aiohttp.ClientSession,
        registration: Registration,
        load: Callable[[], Heartbeat],
        *,
        trust: Callable[[bytes], None],
        on_registered: Callable[[str], None] = lambda gateway: None,
        interval_s: float = 2.0,
        receipts: ReceiptBook | None = None,
        tunnel_when_unreachable: Callable[[str], None] | None = None,
    ):
        self._gateways = tuple(g.rstrip("/") for g in gateways)
        self._signer = signer
        self._session = session
        self._registration = registration
        self._load = load
        self._trust = trust  # told each gateway's public key: its tokens are then accepted
        self._on_registered = on_registered  # told each gateway that accepted us (a tunnel may open there)
        self._interval_s = interval_s
        self._receipts = receipts  # where usage receipts from heartbeat answers are kept
        self._gateway_keys: dict[str, bytes] = {}  # as each gateway's welcome named it
        self._tunnel_when_unreachable = tunnel_when_unreachable  # opens a tunnel to a gateway that cannot dial us
        self._tunnelled: set[str] = set()  # gateways we registered with as tunnelled, having been told to
        self._timeout = aiohttp.ClientTimeout(total=5)
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [start_supervised(f"announcing to {g}", partial(self._announce_to, g)) for g in self._gateways]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def deregister(self) -> None:
        """Stop heartbeating and tell every gateway we are leaving (best effort, bounded)."""
        await self.stop()
        path = worker_path(self._registration.worker_id)
        await asyncio.gather(*(self._leave(g, path) for g in self._gateways))

    async def _leave(self, gateway: str, path: str) -> None:
        try:
            async with self._send("DELETE", gateway, path, b"") as resp:
                if resp.status < 300:
                    log.info("deregistered from %s", gateway)
        except aiohttp.ClientConnectorError:
            log.info("gateway %s is already gone; nothing to deregister from", gateway)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("could not deregister from %s: %s", gateway, type(exc).__name__)

    async def _announce_to(self, gateway: str) -> None:
        interval = self._interval_s
        backoff = min(0.5, interval)
        registered = complained = False
        while True:
            try:
                if not registered:
                    interval = await self._register(gateway)
                    registered, complained = True, False
                    backoff = min(0.5, interval)
                elif not await self._heartbeat(gateway):
                    registered = False
                    continue  # it forgot us: register again now
                await asyncio.sleep(interval)
            except (aiohttp.ClientError, TimeoutError, InvalidRequest) as exc:
                if _refused(exc) and not complained:
                    log.error("gateway %s refused this worker: %s", gateway, exc)
                    complained = True
                elif registered:
                    log.warning("gateway %s unreachable (%s); registering again when it is back", gateway, exc)
                registered = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, interval)

    def _registration_for(self, gateway: str) -> Registration:
        return replace(self._registration, via=TUNNEL) if gateway in self._tunnelled else self._registration

    async def _register(self, gateway: str) -> float:
        async with self._send("POST", gateway, REGISTER_PATH, pack(self._registration_for(gateway))) as resp:
            if resp.status != 200:
                raise aiohttp.ClientResponseError(
                    resp.request_info, (), status=resp.status, message=await _reason(resp)
                )
            welcome = unpack_welcome(await resp.read())
        gateway_key = public_key_from_text(welcome.gateway_key)
        if gateway_key is None:
            raise InvalidRequest(f"gateway {gateway} sent no usable public key")
        self._trust(gateway_key)
        self._gateway_keys[gateway] = gateway_key
        self._on_registered(gateway)
        log.info("registered with %s as %s", gateway, self._registration.worker_id)
        return welcome.heartbeat_interval_s

    async def _heartbeat(self, gateway: str) -> bool:
        """Send our load; False when the gateway no longer knows us (or must know us again, as tunnelled)."""
        path = heartbeat_path(self._registration.worker_id)
        beat, key = self._load(), self._gateway_keys.get(gateway)
        if self._receipts is not None and key is not None:
            beat = dataclasses.replace(beat, receipts_after=self._receipts.cursor(to_text(key)))
        async with self._send("POST", gateway, path, pack(beat)) as resp:
            if resp.status == 404:
                log.info("gateway %s forgot this worker (restarted?); registering again", gateway)
                return False
            if resp.status >= 300:
                raise aiohttp.ClientResponseError(
                    resp.request_info, (), status=resp.status, message=await _reason(resp)
                )
            if resp.status != 200:
                return True
            if resp.content_length is None or resp.content_length > MAX_ANSWER_BYTES:
                raise InvalidRequest(f"gateway {gateway} sent a heartbeat answer of no length or too long")
            answer = unpack_heartbeat_answer(await resp.read())
        if answer.receipts and self._receipts is not None and key is not None:
            await self._receipts.accept(key, answer.receipts)
        return not self._tunnel_if_told(gateway, answer)

    def _tunnel_if_told(self, gateway: str, answer: HeartbeatAnswer) -> bool:
        """Open a tunnel to a gateway that says it cannot dial us; True if we must register there again."""
        if not answer.unreachable or gateway in self._tunnelled or self._tunnel_when_unreachable is None:
            return False
        log.warning(
            "gateway %s cannot reach %s (a router or firewall in the way?): serving it through a tunnel",
            gateway,
            self._registration.url,
        )
        self._tunnel_when_unreachable(gateway)
        self._tunnelled.add(gateway)
        return True

    def _send(self, method: str, gateway: str, path: str, body: bytes) -> aiohttp.client._RequestContextManager:
        enroll = path == REGISTER_PATH  # only a registration may enroll a new key with the join token
        headers = {"Content-Type": CONTENT_TYPE, **self._signer.headers(method, path, body, time.time(), enroll=enroll)}
        return self._session.request(method, gateway + path, data=body, headers=headers, timeout=self._timeout)


def _refused(exc: Exception) -> bool:
    return isinstance(exc, aiohttp.ClientResponseError) and exc.status in (401, 403)


async def _reason(resp: aiohttp.ClientResponse) -> str:
    try:
        return str((await resp.json())["error"]["message"])
    except (ValueError, KeyError, TypeError, aiohttp.ClientError):
        return resp.reason or str(resp.status)
