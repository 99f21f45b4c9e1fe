"""A py-consul asyncio client for a Consul URL, the errors that mean "Consul is unreachable", and the loop
that follows one blocking query for good."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

import aiohttp
import consul
import consul.aio

from routing.errors import InvalidRequest

CONSUL_ERRORS = (aiohttp.ClientError, TimeoutError, consul.ConsulException, OSError)

log = logging.getLogger(__name__)
Answer = TypeVar("Answer")


def consul_client(url: str) -> consul.aio.Consul:
    parts = urlsplit(url)
    return consul.aio.Consul(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 8500,
        scheme=parts.scheme or "http",
        connections_timeout=40,  # longer than a blocking query's wait
    )


async def follow(
    query: Callable[[str | None], Awaitable[tuple[str | None, Answer]]],
    apply: Callable[[Answer], Awaitable[None]],
    *,
    meanwhile: str,
) -> None:
    """Ask ``query`` again and again (a blocking query from the last index) and ``apply`` each answer.

    While Consul is unreachable: one warning (``meanwhile`` says what the gateway does), retries with backoff."""
    index: str | None = None
    unreachable = False
    backoff = 0.5
    while True:
        try:
            answered, answer = await query(index)
        except CONSUL_ERRORS as exc:
            if not unreachable:
                log.warning("Consul unreachable (%s): %s", type(exc).__name__, meanwhile)
                unreachable = True
            index = None
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
            continue
        if unreachable:
            log.info("Consul is reachable again")
            unreachable, backoff = False, 0.5
        index = next_index(index, answered)
        await apply(answer)


Read = TypeVar("Read")


class PassingServices(Generic[Read]):
    """A Consul service's passing instances, for good: each answer's entries go through ``read`` (one that
    raises InvalidRequest is skipped, with one warning per service id) and what it read to ``apply``."""

    def __init__(
        self,
        client: consul.aio.Consul,
        service: str,
        read: Callable[[Any], Read],
        apply: Callable[[list[Read]], Awaitable[None]],
        *,
        meanwhile: str,
        wait_s: float = 30.0,
    ):
        self._client = client
        self._service = service
        self._read = read
        self._apply = apply
        self._meanwhile = meanwhile
        self._wait_s = wait_s
        self._warned: set[str] = set()

    async def run(self) -> None:
        await follow(self._passing, self._answer, meanwhile=self._meanwhile)

    async def _passing(self, index: str | None) -> tuple[str | None, list[dict[str, Any]]]:
        answered, entries = await self._client.health.service(
            self._service, index=index, wait=f"{self._wait_s:g}s", passing=True
        )
        return answered, entries or []

    async def _answer(self, entries: list[dict[str, Any]]) -> None:
        read: list[Read] = []
        for entry in entries:
            service = entry.get("Service") if isinstance(entry, dict) else None
            try:
                read.append(self._read(service))
            except InvalidRequest as exc:
                name = str(service.get("ID", "?"))[:200] if isinstance(service, dict) else "?"
                if name not in self._warned and len(self._warned) < 4096:  # bounded: anyone may write there
                    log.warning("ignoring %s %s in Consul: %s", self._service, name, exc.message)
                    self._warned.add(name)
        await self._apply(read)


def next_index(index: str | None, answered: str | None) -> str | None:
    """The index for the next blocking query: an index that goes backwards (Consul restarted) means start over."""
    return None if index is not None and _number(answered) < _number(index) else answered


def _number(index: str | None) -> int:
    try:
        return int(index or 0)
    except ValueError:
        return 0
