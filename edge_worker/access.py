"""Only gateways may use a worker: ``/v1/*`` needs a credential made for this worker alone.

Two kinds: a token signed by a gateway this worker trusts and naming this
worker (``routing.access_tokens``; registered and Consul workers), or the
worker's own ``access_token`` (a static worker, listed in a gateway's config).
Neither works at any other worker. A worker with neither (no gateways, no
Consul, no access token) is open (a laptop, or a trusted network), and says so
at start. ``/health`` and ``/metrics`` stay open for probes and scrapers
unless ``open_health_and_metrics`` is off.
"""

from __future__ import annotations

import hashlib
import hmac

from aiohttp import web
from aiohttp.typedefs import Middleware

from routing.access_tokens import TokenChecker
from routing.errors import Unauthorized
from routing.http_errors import Handler

OPEN_PATHS = ("/health", "/metrics")


def gateway_only(tokens: TokenChecker, access_token: str, *, open_health_and_metrics: bool) -> Middleware:
    own = hashlib.sha256(access_token.encode()).digest() if access_token else b""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if open_health_and_metrics and request.path in OPEN_PATHS:
            return await handler(request)
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        given = given.strip() if scheme.lower() == "bearer" else ""
        # Hashes compare in constant time whatever the lengths.
        matches_own = bool(own) and hmac.compare_digest(hashlib.sha256(given.encode()).digest(), own)
        if not given or not (matches_own or tokens.accepts(given)):
            raise Unauthorized("This worker serves its gateways only; send requests to a gateway.")
        return await handler(request)

    return check
