"""Who may call the gateway: client API keys on ``/v1/*``, the admin key on ``/admin/*``.

With no API keys configured the client API is open (``infercdn up`` on
loopback says so at start; elsewhere the config refuses it unless
``allow_open``). Without an admin key, admin endpoints answer only such an
open loopback gateway. Every secret is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from gateway.canaries import CANARY
from gateway.keys import ApiKey, KeyStore
from gateway.metrics import GatewayMetrics
from routing.errors import Forbidden, InferCDNError, Unauthorized
from routing.receipt import KEYS_PATH

API_KEY = web.RequestKey("api_key", ApiKey)

NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header "
    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)


@dataclass(frozen=True, slots=True)
class Access:
    keys: KeyStore
    admin_key: str
    loopback: bool  # the gateway listens on loopback only

    @property
    def open(self) -> bool:
        return len(self.keys) == 0

    def client(self, request: web.Request) -> ApiKey | None:
        """The caller's key (None on an open gateway); Unauthorized when it is missing or wrong."""
        if self.open:
            return None
        presented = _bearer(request)
        if not presented:
            raise Unauthorized(NO_KEY)
        key = self.keys.check(presented)
        if key is None:
            raise Unauthorized("Incorrect API key provided.")
        return key

    def admin(self, request: web.Request) -> None:
        if not self.admin_key:
            if self.open and self.loopback:
                return
            raise Forbidden("Admin endpoints are off: this gateway has no admin key configured.")
        presented = hashlib.sha256(_bearer(request).encode()).digest()
        if not hmac.compare_digest(presented, hashlib.sha256(self.admin_key.encode()).digest()):
            raise Unauthorized("This endpoint needs the admin key (Authorization: Bearer ADMIN_KEY).")


def authenticate(access: Access, metrics: GatewayMetrics) -> Middleware:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.get(CANARY) is not None:
            pass  # this gateway's own canary (the mark is set in-process only: no request can carry it)
        elif request.path.startswith("/v1/") and request.path != KEYS_PATH:  # public keys are public
            try:
                key = access.client(request)
            except InferCDNError as exc:
                metrics.requests.labels("unknown", str(exc.status), "rejected").inc()
                raise
            if key is not None:
                request[API_KEY] = key
        elif request.path.startswith("/admin/"):
            access.admin(request)
        return await handler(request)

    return check


def _bearer(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""
