"""Announcing this worker through Consul: a service with a TTL check the heartbeat refreshes.

The service carries the signed registration in its ``Meta``
(``routing.consul_wire``). Its TTL check goes critical when heartbeats stop,
so gateways watching ``?passing`` drop the worker, and Consul deregisters it
after ``DeregisterCriticalServiceAfter``. If Consul loses the service (an
agent restart) the heartbeat fails and the worker registers again; while
Consul is unreachable it keeps trying. A clean stop deregisters. Load is not
written to Consul (every write wakes every watcher); gateways read it from
the worker's ``/health`` in their probes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from urllib.parse import urlsplit

import consul
import consul.aio

from routing.announce import Registration
from routing.consul_client import CONSUL_ERRORS
from routing.consul_wire import LIFETIME_S, registration_to_meta
from routing.identity import Identity
from routing.supervise import start_supervised

log = logging.getLogger(__name__)


class ConsulAnnouncer:
    def __init__(
        self,
        client: consul.aio.Consul,
        service: str,
        registration: Registration,
        identity: Identity,
        join_token: str,
        *,
        interval_s: float = 2.0,
        handover: str = "",
    ):
        self._handover = handover
        self._client = client
        self._service = service
        self._registration = registration
        self._identity = identity
        self._join_token = join_token
        self._interval_s = interval_s
        self._renew_at = 0.0  # when the signed Meta is half way to its expiry
        self._task: asyncio.Task[None] | None = None

    @property
    def check_id(self) -> str:
        return f"service:{self._registration.worker_id}"

    def start(self) -> None:
        self._task = start_supervised("Consul heartbeat", self._run)

    async def deregister(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self._client.agent.service.deregister(self._registration.worker_id)
            log.info("deregistered from Consul")
        except CONSUL_ERRORS as exc:
            log.warning("could not deregister from Consul: %s", type(exc).__name__)

    async def _register(self) -> None:
        url = urlsplit(self._registration.url)
        ttl = self._interval_s * 3
        now = time.time()
        meta = registration_to_meta(self._registration, self._identity, self._join_token, now, handover=self._handover)
        self._renew_at = now + LIFETIME_S / 2
        await self._client.agent.service.register(
            self._service,
            service_id=self._registration.worker_id,
            address=url.hostname,
            port=url.port,
            meta=meta,
            check={
                "CheckID": self.check_id,
                "TTL": f"{ttl:g}s",
                "DeregisterCriticalServiceAfter": f"{max(60, ttl * 10):g}s",
            },
        )
        await self._client.agent.check.ttl_pass(self.check_id)

    async def _run(self) -> None:
        registered = False
        while True:
            try:
                if not registered or time.time() >= self._renew_at:  # signed Meta expires: renew it
                    await self._register()
                    registered = True
                    log.info("registered in Consul as %s/%s", self._service, self._registration.worker_id)
                else:
                    await self._client.agent.check.ttl_pass(self.check_id)
            except consul.NotFound:
                log.info("Consul no longer knows this worker; registering again")
                registered = False
                continue
            except CONSUL_ERRORS as exc:
                if registered:
                    log.warning("Consul unreachable (%s); will register again when it is back", type(exc).__name__)
                registered = False
            await asyncio.sleep(self._interval_s)
