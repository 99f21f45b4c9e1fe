"""A verifier in Consul: where it is, proven to hold the fleet's verifier key, so gateways find it.

A verifier with ``consul_url`` and ``public_url`` registers a service
(``infercdn-verifier``) whose ``Meta`` holds its URL, an expiry and an
HMAC-SHA256 of both keyed from the verifier key (which gateways and
verifiers share; workers never hold it). A gateway with ``consul_url`` and a
``verifier_key`` adds every verifier whose MAC holds to its static
``verifiers``: someone who can write to Consul cannot make a gateway send its
verifier key, or the answers it audits, to an address of theirs.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

from routing.errors import InvalidRequest
from routing.signing import derive_key

SERVICE = "infercdn-verifier"
URL, EXPIRES, MAC = "infercdn_url", "infercdn_expires", "infercdn_mac"
LIFETIME_S = 3600
MAX_URL = 512
_PURPOSE = "infercdn verifier presence v1"


def _mac(verifier_key: str, url: str, expires: int) -> str:
    return hmac.new(derive_key(verifier_key, _PURPOSE), f"{url}\n{expires}".encode(), hashlib.sha256).hexdigest()


def service_id(url: str) -> str:
    return "verifier-" + hashlib.sha256(url.encode()).hexdigest()[:16]


def presence_meta(url: str, verifier_key: str, now: float) -> dict[str, str]:
    expires = int(now + LIFETIME_S)
    return {URL: url, EXPIRES: str(expires), MAC: _mac(verifier_key, url, expires)}


def verifier_url(service: Any, verifier_key: str, now: float | None = None) -> str:
    """The URL of the verifier a Consul ``Service`` announces; InvalidRequest unless its MAC holds and it has
    not expired (at ``now``; default: the wall clock)."""
    now = time.time() if now is None else now
    meta = service.get("Meta") if isinstance(service, dict) else None
    if not isinstance(meta, dict):
        raise InvalidRequest("a verifier service without Meta")
    url, expires_text, mac = str(meta.get(URL, "")), str(meta.get(EXPIRES, "")), str(meta.get(MAC, ""))
    if not (url.startswith(("http://", "https://")) and len(url) <= MAX_URL and url.isprintable()):
        raise InvalidRequest("a verifier service with a malformed URL")
    if not (expires_text.isascii() and expires_text.isdigit() and len(expires_text) <= 12):
        raise InvalidRequest("a verifier service with a malformed expiry")
    expires = int(expires_text)
    if not now <= expires <= now + LIFETIME_S + 60:
        raise InvalidRequest("a verifier service whose proof has expired (or is from the future)")
    if not hmac.compare_digest(mac.encode(), _mac(verifier_key, url, expires).encode()):
        raise InvalidRequest("a verifier service not proven with this fleet's verifier key")
    return url.rstrip("/")
