"""A py-consul asyncio client for a Consul URL, and the errors that mean "Consul is unreachable"."""

from __future__ import annotations

from urllib.parse import urlsplit

import aiohttp
import consul
import consul.aio

CONSUL_ERRORS = (aiohttp.ClientError, TimeoutError, consul.ConsulException, OSError)


def consul_client(url: str) -> consul.aio.Consul:
    parts = urlsplit(url)
    return consul.aio.Consul(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 8500,
        scheme=parts.scheme or "http",
        connections_timeout=40,  # longer than a blocking query's wait
    )
