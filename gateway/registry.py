"""The embedded registry: workers register, heartbeat and deregister here.

Every message is msgpack, signed with the join token (``routing.signing``);
an unsigned, forged, stale or replayed one gets 401 and changes nothing. A
worker whose heartbeats stop is dropped from the fleet after ``ttl_s``. A
heartbeat from a worker this gateway does not know (it restarted) gets 404,
which tells the worker to register again at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiohttp import web

from routing.announce import (
    CONTENT_TYPE,
    Welcome,
    check_worker_id,
    pack,
    unpack_heartbeat,
    unpack_registration,
)
from routing.balancer import Balancer
from routing.discovery import Remove, Upsert
from routing.errors import Forbidden, InvalidRequest, NotFound
from routing.fleet import Load, describe_offers
from routing.signing import Verifier

log = logging.getLogger(__name__)


class Registry:
    def __init__(
        self,
        balancer: Balancer,
        verifier: Verifier | None,
        *,
        ttl_s: float,
        heartbeat_interval_s: float,
        worker_bearer: str,
        clock: Callable[[], float] | None = None,
    ):
        self._balancer = balancer
        self._verifier = verifier
        self._ttl_s = ttl_s
        self._heartbeat_interval_s = heartbeat_interval_s
        self._worker_bearer = worker_bearer
        self._last_seen: dict[str, float] = {}
        self._clock = clock or (lambda: asyncio.get_running_loop().time())

    async def register(self, request: web.Request) -> web.Response:
        registration = unpack_registration(await self._verified(request))
        worker = registration.worker(source="registry", bearer=self._worker_bearer)
        self._last_seen[worker.id] = self._clock()
        if self._balancer.apply(Upsert(worker, registration.offers)):
            log.info(
                "worker %s registered: %s at %s (%s), serving %s",
                worker.id,
                worker.runtime or "?",
                worker.url,
                worker.hardware or "?",
                describe_offers(registration.offers),
            )
        welcome = Welcome(heartbeat_interval_s=self._heartbeat_interval_s, ttl_s=self._ttl_s)
        return web.Response(body=pack(welcome), content_type=CONTENT_TYPE)

    async def heartbeat(self, request: web.Request) -> web.Response:
        body = await self._verified(request)
        worker_id = check_worker_id(request.match_info["worker_id"])
        beat = unpack_heartbeat(body)
        if beat.worker_id != worker_id:
            raise InvalidRequest("the heartbeat's worker_id does not match the path", param="worker_id")
        state = self._balancer.fleet.get(worker_id)
        if state is None or worker_id not in self._last_seen:
            raise NotFound(f"Worker {worker_id} is not registered here; register again.", code="unknown_worker")
        now = self._clock()
        load = Load(beat.in_flight, beat.queued, beat.kv_cache_usage, beat.tokens_per_second)
        self._balancer.report_load(state, load, now)
        self._last_seen[worker_id] = now
        return web.Response(status=204)

    async def deregister(self, request: web.Request) -> web.Response:
        await self._verified(request)
        worker_id = check_worker_id(request.match_info["worker_id"])
        if self._last_seen.pop(worker_id, None) is not None:
            self._balancer.apply(Remove(worker_id))
            log.info("worker %s deregistered", worker_id)
        return web.Response(status=204)

    def last_heartbeat_age_s(self, worker_id: str) -> float | None:
        seen = self._last_seen.get(worker_id)
        return None if seen is None else self._clock() - seen

    def expire(self, now: float) -> list[str]:
        """Drop workers whose last heartbeat is older than the TTL; returns their ids."""
        gone = [w for w, seen in self._last_seen.items() if now - seen > self._ttl_s]
        for worker_id in gone:
            del self._last_seen[worker_id]
            self._balancer.apply(Remove(worker_id))
            log.warning("worker %s missed its heartbeats for %.0f s: dropped from the fleet", worker_id, self._ttl_s)
        return gone

    async def run(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self._ttl_s / 4))
            self.expire(self._clock())

    async def _verified(self, request: web.Request) -> bytes:
        if self._verifier is None:
            raise Forbidden("Registration is disabled: this gateway has no join token configured.")
        body = await request.read()
        self._verifier.verify(request.method, request.path, request.headers, body, time.time())
        return body
