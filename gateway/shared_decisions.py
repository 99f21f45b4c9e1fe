"""Operator decisions shared by the gateways of one Consul: approve, revoke and forget hold fleet-wide.

Each decision taken at this gateway is written to Consul KV
(``routing.enrollment_decision``); a blocking query on the prefix brings
every gateway's decisions here, applied to this gateway's own store. A
decision that cannot be written (Consul down) is kept and written once Consul
answers again, so none is lost. A malformed or forged value is skipped with
one warning and never stops the watch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import consul.aio

from gateway.enrollments import Enrollments
from routing.consul_client import CONSUL_ERRORS, follow
from routing.enrollment_decision import KV_PREFIX, Decision, seal, unseal
from routing.errors import InvalidRequest

log = logging.getLogger(__name__)
WRITE_TIMEOUT_S = 5.0


class SharedDecisions:
    def __init__(
        self,
        client: consul.aio.Consul,
        enrollments: Enrollments,
        key: bytes,
        *,
        drop: Callable[[str], object],
        wait_s: float = 30.0,
    ):
        self._client = client
        self._enrollments = enrollments
        self._key = key
        self._drop = drop  # takes a worker id out of the fleet (a revocation acts at once)
        self._wait_s = wait_s
        self._unwritten: dict[str, bytes] = {}  # KV key → value, waiting for Consul to answer
        self._applied: dict[str, int] = {}  # KV key → the ModifyIndex last applied (each answer lists them all)
        self._refused: set[str] = set()  # KV keys already warned about
        enrollments.published = self.publish

    async def publish(self, decision: Decision) -> None:
        """Write ``decision`` for the fleet; kept for later if Consul does not take it now."""
        self._unwritten[KV_PREFIX + decision.worker_id] = seal(decision, self._key)
        await self._write_unwritten()

    async def run(self) -> None:
        await follow(self._query, self._apply, meanwhile="operator decisions are not shared until it answers")

    async def _query(self, index: str | None) -> tuple[str | None, list[dict[str, Any]]]:
        answered, items = await self._client.kv.get(KV_PREFIX, index=index, wait=f"{self._wait_s:g}s", recurse=True)
        return answered, items or []

    async def _apply(self, items: list[dict[str, Any]]) -> None:
        await self._write_unwritten()
        for item in items:
            name, modified = str(item.get("Key", "")), item.get("ModifyIndex")
            if self._applied.get(name) == modified or name in self._unwritten:
                continue  # seen already, or ours is newer and about to be written
            try:
                value = item.get("Value") or b""
                decision = unseal(value if isinstance(value, bytes) else str(value).encode(), self._key)
                if KV_PREFIX + decision.worker_id != name:
                    raise InvalidRequest("a decision filed under another worker's id")
            except InvalidRequest as exc:
                if name not in self._refused and len(self._refused) < 4096:
                    log.warning("ignoring the enrollment decision at %s in Consul: %s", name[:200], exc.message)
                    self._refused.add(name)
                continue
            self._applied[name] = modified if isinstance(modified, int) else -1
            if await self._enrollments.follow(decision):
                log.info("worker %s %s by an operator at another gateway", decision.worker_id, decision.decision)
                if decision.decision != "approved":
                    self._drop(decision.worker_id)

    async def _write_unwritten(self) -> None:
        for name, value in list(self._unwritten.items()):
            try:
                async with asyncio.timeout(WRITE_TIMEOUT_S):  # an operator waits on it: never for long
                    await self._client.kv.put(name, value)
            except CONSUL_ERRORS as exc:
                log.warning("could not share %s through Consul yet (%s): will retry", name, type(exc).__name__)
                return
            if self._unwritten.get(name) == value:
                del self._unwritten[name]
