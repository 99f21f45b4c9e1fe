"""Being in Consul: a service with signed ``Meta`` and a TTL check a heartbeat refreshes.

A worker announces its signed registration this way (``routing.consul_wire``;
gateways watching ``?passing`` find it), and a gateway its own URL and key
(``routing.gateway_presence``: tunnelled Consul workers find it). The TTL
check goes critical when heartbeats stop, so watchers drop the service, and
Consul deregisters it after ``DeregisterCriticalServiceAfter``. The signed
``Meta`` expires: it is renewed at half its life. If Consul loses the service
(an agent restart) the heartbeat fails and it registers again; while Consul is
unreachable it keeps trying. A clean stop deregisters. Load is not written to
Consul (every write wakes every watcher); gateways read a worker's from its
``/health`` in their probes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import consul
import consul.aio

from routing.consul_client import CONSUL_ERRORS
from routing.supervise import start_supervised

log = logging.getLogger(__name__)


class ConsulService:
    def __init__(
        self,
        client: consul.aio.Consul,
        service: str,
        service_id: str,
        url: str,
        signed_meta: Callable[[float], dict[str, str]],
        *,
        lifetime_s: float,
        interval_s: float = 2.0,
    ):
        self._client = client
        self._service = service
        self._service_id = service_id
        self._url = url
        self._signed_meta = signed_meta  # the Meta as signed at a time, valid lifetime_s from then
        self._lifetime_s = lifetime_s
        self._interval_s = interval_s
        self._renew_at = 0.0  # when the signed Meta is half way to its expiry
        self._task: asyncio.Task[None] | None = None

    @property
    def check_id(self) -> str:
        return f"service:{self._service_id}"

    def start(self) -> None:
        self._task = start_supervised(f"Consul heartbeat ({self._service})", self._run)

    async def deregister(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self._client.agent.service.deregister(self._service_id)
            log.info("deregistered %s from Consul", self._service_id)
        except CONSUL_ERRORS as exc:
            log.warning("could not deregister from Consul: %s", type(exc).__name__)

    async def _register(self) -> None:
        url = urlsplit(self._url)
        ttl = self._interval_s * 3
        now = time.time()
        meta = self._signed_meta(now)
        self._renew_at = now + self._lifetime_s / 2
        await self._client.agent.service.register(
            self._service,
            service_id=self._service_id,
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
                    log.info("registered in Consul as %s/%s", self._service, self._service_id)
                else:
                    await self._client.agent.check.ttl_pass(self.check_id)
            except consul.NotFound:
                log.info("Consul no longer knows %s; registering again", self._service_id)
                registered = False
                continue
            except CONSUL_ERRORS as exc:
                if registered:
                    log.warning("Consul unreachable (%s); will register again when it is back", type(exc).__name__)
                registered = False
            await asyncio.sleep(self._interval_s)
