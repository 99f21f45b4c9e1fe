"""Workers from a Consul catalog: a blocking query on ``/v1/health/service/<name>?passing``.

Each answer is the whole set of passing instances; it becomes the changes
(``Upsert`` / ``Remove``) that make the fleet's Consul workers match it. Only
entries signed by the worker's own key, unexpired, whose key is enrolled for
that id (or enrolls now, proving the join token) are accepted; any other is
skipped with one warning, and never stops the watch. While Consul is unreachable the gateway
keeps routing on the last set it saw, and catches up when Consul answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import consul.aio

from gateway.enrollments import Enrollments
from routing.advertise import AddressPolicy, checked_addresses, url_parts
from routing.balancer import Balancer
from routing.consul_client import follow
from routing.consul_wire import entry_from_service
from routing.discovery import Change, Remove, Upsert
from routing.errors import InferCDNError
from routing.fleet import TUNNEL

log = logging.getLogger(__name__)


class ConsulWatch:
    def __init__(
        self,
        balancer: Balancer,
        client: consul.aio.Consul,
        service: str,
        join_token: str,
        enrollments: Enrollments,
        *,
        bearer_for: Callable[[str], str],
        policy: AddressPolicy,
        wall_clock: Callable[[], float] = time.time,
        wait_s: float = 30.0,
        answered: Callable[[], None] = lambda: None,
    ):
        self._balancer = balancer
        self._client = client
        self._service = service
        self._join_token = join_token
        self._enrollments = enrollments
        self._policy = policy
        self._wall_clock = wall_clock
        self._bearer_for = bearer_for  # the access token for a worker id
        self._wait_s = wait_s
        self._answered = answered  # told after each answer applied: the fleet is known
        self._refused: set[str] = set()  # ids already warned about
        self._known: set[str] = set()  # worker ids the last answer listed
        self._last: list[dict[str, Any]] = []  # the last answer, looked at again after an operator's decision
        self._applying = asyncio.Lock()
        enrollments.listeners.append(self.reconsider)

    async def run(self) -> None:
        await follow(self._passing, self._apply_answer, meanwhile="routing on the last known fleet")

    async def _passing(self, index: str | None) -> tuple[str | None, list[dict[str, Any]]]:
        answered, entries = await self._client.health.service(
            self._service, index=index, wait=f"{self._wait_s:g}s", passing=True
        )
        return answered, entries or []

    async def _apply_answer(self, entries: list[dict[str, Any]]) -> None:
        await self.apply(entries)
        self._answered()

    async def reconsider(self) -> None:
        """Apply the last answer again: an id approved (or revoked) since then is let in (or out) now, not at
        Consul's next change."""
        await self.apply(self._last)

    async def apply(self, entries: list[dict[str, Any]]) -> None:
        async with self._applying:
            self._last = entries
            await self._apply(entries)

    async def _apply(self, entries: list[dict[str, Any]]) -> None:
        for change in await self.changes(entries):
            if not self._balancer.apply(change):
                continue
            if isinstance(change, Upsert):
                log.info("worker %s (from Consul) at %s", change.worker.id, change.worker.url)
            else:
                log.info("worker %s is no longer passing in Consul: dropped from the fleet", change.worker_id)

    async def changes(self, entries: list[dict[str, Any]]) -> list[Change]:
        """What makes the fleet's Consul workers match this answer: every accepted entry, and who left."""
        listed: dict[str, Change] = {}
        for entry in entries:
            service = entry.get("Service") if isinstance(entry, dict) else None
            service = service if isinstance(service, dict) else {}
            try:
                accepted = entry_from_service(service, self._join_token, self._wall_clock())
                reg = accepted.registration
                binding = self._enrollments.check(accepted.signed, registering=True)
                known = self._balancer.fleet.get(reg.worker_id)
                # Resolved on arrival and on change only; a tunnelled worker is never dialled: nothing to check.
                if reg.via != TUNNEL and (known is None or known.worker.url != reg.url):
                    await checked_addresses(reg.url, self._policy)
                if binding is not None:  # new ones rate limited per advertised host, as the registry does per source
                    await self._enrollments.bind(binding, source=f"consul {url_parts(reg.url)[0]}")
            except InferCDNError as exc:
                service_id = str(service.get("ID", "?"))
                if len(self._refused) > 4096:  # bounded: entries are anyone's who can write to Consul
                    self._refused.clear()
                if service_id not in self._refused:
                    log.warning("ignoring Consul service %s: %s", service_id, exc.message)
                    self._refused.add(service_id)
                continue
            self._refused.discard(reg.worker_id)  # a later refusal is worth a warning again
            listed[reg.worker_id] = Upsert(
                reg.worker(source="consul", bearer=self._bearer_for(reg.worker_id)), reg.offers
            )
        gone = [Remove(worker_id) for worker_id in sorted(self._known - listed.keys())]
        self._known = set(listed)
        return [*listed.values(), *gone]
