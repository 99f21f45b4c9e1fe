"""Only gateways may use a worker: ``/v1/*`` needs the credential derived from the join token.

Without a join token the worker is open (a laptop, or a trusted network), and
says so at start. ``/health`` and ``/metrics`` stay open for probes and
scrapers unless ``open_health_and_metrics`` is off.
"""

from __future__ import annotations

import hmac

from aiohttp import web
from aiohttp.typedefs import Middleware

from routing.errors import Unauthorized
from routing.http_errors import Handler
from routing.signing import worker_access_token

OPEN_PATHS = ("/health", "/metrics")


def gateway_only(join_token: str, *, open_health_and_metrics: bool) -> Middleware:
    expected = f"Bearer {worker_access_token(join_token)}".encode()

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if open_health_and_metrics and request.path in OPEN_PATHS:
            return await handler(request)
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            raise Unauthorized("This worker serves its gateways only; send requests to a gateway.")
        return await handler(request)

    return check
