"""The embedded registry: workers register, heartbeat and deregister here.

Every message is msgpack, signed with the worker's own key
(``routing.signing``); a new key enrolls with the join token
(``gateway.enrollments``). The order of the checks is the point: the body's
size before reading it, the signature before parsing it, the key's binding
before remembering its nonce, and the advertised URL's addresses
(``routing.advertise``) before the worker joins the fleet. An unsigned,
forged, stale, replayed or foreign message gets 401/403 and changes nothing.

A worker whose heartbeats stop is dropped from the fleet after ``ttl_s``. A
heartbeat from a worker this gateway does not know (it restarted) gets 404,
which tells the worker to register again at once. The answer to a
registration carries the gateway's public key: the worker then accepts the
gateway's tokens (``routing.access_tokens``), each good for that worker only.
With a ledger, the answer to a heartbeat carries the worker's next usage
receipts (``gateway.receipt_desk``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable

from aiohttp import web

from gateway.enrollment_store import Enrollment
from gateway.enrollments import Enrollments
from gateway.receipt_desk import ReceiptDesk
from gateway.tunnels import TunnelHub
from routing.access_tokens import TokenMinter
from routing.advertise import AddressPolicy, IPAddress, checked_addresses
from routing.announce import (
    CONTENT_TYPE,
    MAX_MESSAGE_BYTES,
    HeartbeatAnswer,
    Welcome,
    check_worker_id,
    pack,
    unpack_heartbeat,
    unpack_receipts_ask,
    unpack_registration,
)
from routing.balancer import Balancer
from routing.discovery import Remove, Upsert
from routing.errors import Forbidden, InvalidRequest, NotFound, RequestTooLarge
from routing.fleet import TUNNEL, Load, WorkerState, describe_offers
from routing.signing import SignedMessage, Verifier

# Heartbeats in a row that find a direct worker's probes failing before it is told to dial a tunnel.
UNREACHABLE_BEATS = 2

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class RegistryLimits:
    ttl_s: float
    heartbeat_interval_s: float
    max_workers_per_address: int = 16


class Registry:
    def __init__(
        self,
        balancer: Balancer,
        verifier: Verifier,
        enrollments: Enrollments,
        minter: TokenMinter,
        policy: AddressPolicy,
        limits: RegistryLimits,
        tunnels: TunnelHub,
        *,
        clock: Callable[[], float] | None = None,
        wall_clock: Callable[[], float] = time.time,
        forget_address: Callable[[str], None] = lambda url: None,
    ):
        self._balancer = balancer
        self._forget_address = forget_address
        self._verifier = verifier
        self.enrollments = enrollments
        self.minter = minter
        self.policy = policy
        self._limits = limits
        self.tunnels = tunnels
        self._last_seen: dict[str, float] = {}
        self._addresses: dict[str, tuple[IPAddress, ...]] = {}
        self._unreachable_beats: dict[str, int] = {}  # heartbeats in a row that found the worker undialable
        self._clock = clock or (lambda: asyncio.get_running_loop().time())
        self._wall_clock = wall_clock
        self.receipts: ReceiptDesk | None = None  # set when the gateway keeps a ledger

    async def register(self, request: web.Request) -> web.Response:
        message, body, binding = await self._authenticated(request, registering=True)
        registration = unpack_registration(body)
        if registration.worker_id != message.worker_id:
            raise Forbidden("A worker may only register itself (the body names another id).", code="foreign_worker")
        # A tunnelled worker is never dialled: its URL is only a label, so there is no address to check.
        tunnelled = registration.via == TUNNEL
        addresses = () if tunnelled else await checked_addresses(registration.url, self.policy)
        self._check_crowding(registration.worker_id, addresses)
        if binding is not None:  # only a registration that would be accepted takes a place in the store
            await self.enrollments.bind(binding, source=request.remote or "?")
        self._verifier.remember(message, self._wall_clock())
        worker = registration.worker(source="registry", bearer=self.minter.token_for(registration.worker_id))
        self._addresses[worker.id] = addresses
        self._last_seen[worker.id] = self._clock()
        if not tunnelled:  # a worker that registers again may be at a new address under the same name
            self._forget_address(worker.url)
        if self._balancer.apply(Upsert(worker, registration.offers)):
            log.info(
                "worker %s registered: %s at %s (%s), serving %s",
                worker.id,
                worker.runtime or "?",
                "the end of a tunnel" if tunnelled else worker.url,
                worker.hardware or "?",
                describe_offers(registration.offers),
            )
        welcome = Welcome(
            heartbeat_interval_s=self._limits.heartbeat_interval_s,
            ttl_s=self._limits.ttl_s,
            gateway_key=self.minter.public_text,
        )
        return web.Response(body=pack(welcome), content_type=CONTENT_TYPE)

    async def heartbeat(self, request: web.Request) -> web.Response:
        message, body, _ = await self._authenticated(request, registering=False)
        self._verifier.remember(message, self._wall_clock())
        beat = unpack_heartbeat(body)
        if beat.worker_id != message.worker_id:
            raise InvalidRequest("the heartbeat's worker_id does not match the path", param="worker_id")
        state = self._balancer.fleet.get(message.worker_id)
        if state is None or message.worker_id not in self._last_seen:
            raise NotFound(f"Worker {message.worker_id} is not registered here; register again.", code="unknown_worker")
        now = self._clock()
        load = Load(beat.in_flight, beat.queued, beat.kv_cache_usage, beat.tokens_per_second)
        self._balancer.report_load(state, load, now)
        self._last_seen[message.worker_id] = now
        token = self.minter.token_for(message.worker_id)
        if token != state.worker.bearer:  # renewed at half its life
            self._balancer.apply(Upsert(dataclasses.replace(state.worker, bearer=token), state.offers))
        owed = await self.receipts.owed(message.worker_id, beat.receipts_after) if self.receipts else ()
        unreachable = self._undialable(state)
        if not (owed or unreachable):
            return web.Response(status=204)
        return web.Response(body=pack(HeartbeatAnswer(owed, unreachable)), content_type=CONTENT_TYPE)

    def _undialable(self, state: WorkerState) -> bool:
        """Whether a direct worker's probes fail while its heartbeats arrive: for this many heartbeats in a row,
        so a worker still opening its port is not sent to a tunnel."""
        worker_id = state.worker.id
        if state.worker.via == TUNNEL or state.health.reachable:
            self._unreachable_beats.pop(worker_id, None)
            return False
        beats = self._unreachable_beats[worker_id] = self._unreachable_beats.get(worker_id, 0) + 1
        return beats >= UNREACHABLE_BEATS

    async def deregister(self, request: web.Request) -> web.Response:
        message, _, _ = await self._authenticated(request, registering=False)
        self._verifier.remember(message, self._wall_clock())
        if self.evict(message.worker_id):
            log.info("worker %s deregistered", message.worker_id)
        return web.Response(status=204)

    async def owed_receipts(self, request: web.Request) -> web.Response:
        """A Consul worker's receipts (a registered one gets them with its heartbeats): signed by its key."""
        message, body, _ = await self._authenticated(request, registering=False)
        ask = unpack_receipts_ask(body)
        if ask.worker_id != message.worker_id:
            raise InvalidRequest("the request's worker_id does not match the path", param="worker_id")
        state = self._balancer.fleet.get(message.worker_id)
        if state is None or state.worker.source != "consul":
            raise NotFound(f"Worker {message.worker_id} is not in this gateway's Consul fleet.", code="unknown_worker")
        self._verifier.remember(message, self._wall_clock())
        owed = await self.receipts.owed(message.worker_id, ask.receipts_after) if self.receipts else ()
        if not owed:
            return web.Response(status=204)
        return web.Response(body=pack(HeartbeatAnswer(owed)), content_type=CONTENT_TYPE)

    async def tunnel(self, request: web.Request) -> web.StreamResponse:
        """A registered worker's tunnel: signed by the key bound to its id, then carried by the hub."""
        message, _, _ = await self._authenticated(request, registering=False)
        state = self._balancer.fleet.get(message.worker_id)
        # Registered here, or found in Consul as tunnelled (its entry signed by the same key).
        known = state is not None and (
            message.worker_id in self._last_seen or (state.worker.source == "consul" and state.worker.via == TUNNEL)
        )
        if not known:
            raise NotFound(f"Worker {message.worker_id} is not registered here; register first.", code="unknown_worker")
        self._verifier.remember(message, self._wall_clock())
        return await self.tunnels.serve(request, message.worker_id)

    def drop(self, worker_id: str) -> None:
        """An operator's revocation or forgetting: out of the fleet at once, however it came (Consul too)."""
        if not self.evict(worker_id):
            self._balancer.apply(Remove(worker_id))

    def evict(self, worker_id: str) -> bool:
        """Drop a registered worker from the fleet (it left, went silent, or was revoked)."""
        self.tunnels.drop(worker_id)
        self._addresses.pop(worker_id, None)
        self._unreachable_beats.pop(worker_id, None)
        self.minter.forget(worker_id)
        if self._last_seen.pop(worker_id, None) is None:
            return False
        self._balancer.apply(Remove(worker_id))
        return True

    def last_heartbeat_age_s(self, worker_id: str) -> float | None:
        seen = self._last_seen.get(worker_id)
        return None if seen is None else self._clock() - seen

    def expire(self, now: float) -> list[str]:
        """Drop workers whose last heartbeat is older than the TTL; returns their ids."""
        gone = [w for w, seen in self._last_seen.items() if now - seen > self._limits.ttl_s]
        for worker_id in gone:
            self.evict(worker_id)
            log.warning(
                "worker %s missed its heartbeats for %.0f s: dropped from the fleet", worker_id, self._limits.ttl_s
            )
        return gone

    async def run(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self._limits.ttl_s / 4))
            self.expire(self._clock())

    def _check_crowding(self, worker_id: str, addresses: tuple[IPAddress, ...]) -> None:
        """A cap on workers per address: thousands of registrations must not aim the probes at one host."""
        for address in addresses:
            sharing = sum(1 for w, a in self._addresses.items() if w != worker_id and address in a)
            if sharing >= self._limits.max_workers_per_address:
                raise Forbidden(
                    f"{sharing} workers are registered at {address} already (max_workers_per_address).",
                    code="too_many_workers_at_address",
                )

    async def _authenticated(
        self, request: web.Request, *, registering: bool
    ) -> tuple[SignedMessage, bytes, Enrollment | None]:
        """The message, its body, and the binding it makes (a new key, a handover; else None); raise unless its key
        may speak for its id.

        Its nonce is remembered by the caller, once the message is accepted."""
        length = request.content_length
        if request.method == "GET" and not length:
            body = b""  # a tunnel's open: the signature covers the method and path
        elif length is None or length > MAX_MESSAGE_BYTES:
            raise RequestTooLarge(f"A control message needs a Content-Length of at most {MAX_MESSAGE_BYTES} bytes.")
        else:
            body = await request.read()
        now = self._wall_clock()
        message = self._verifier.authenticate(request.method, request.path, request.headers, body, now)
        check_worker_id(message.worker_id)
        if not registering and check_worker_id(request.match_info["worker_id"]) != message.worker_id:
            raise Forbidden("A worker may only speak for itself (the path names another id).", code="foreign_worker")
        return message, body, self.enrollments.check(message, registering=registering)
