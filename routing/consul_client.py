"""A py-consul asyncio client for a Consul URL, the errors that mean "Consul is unreachable", and the loop
that follows one blocking query for good."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import urlsplit

import aiohttp
import consul
import consul.aio

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


def next_index(index: str | None, answered: str | None) -> str | None:
    """The index for the next blocking query: an index that goes backwards (Consul restarted) means start over."""
    return None if index is not None and _number(answered) < _number(index) else answered


def _number(index: str | None) -> int:
    try:
        return int(index or 0)
    except ValueError:
        return 0
