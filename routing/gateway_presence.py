"""A gateway in Consul: where it is and which key it signs with, so that Consul workers can dial it.

A gateway with ``consul_url`` and ``public_url`` registers a service
(``infercdn-gateway``) whose ``Meta`` holds its URL, its public key, an
expiry and its Ed25519 signature over those. A tunnelled Consul worker (no
``--gateway`` list) watches that service and dials a tunnel to each gateway
whose key it trusts (``gateway_keys``) and whose signature holds: someone who
can write to Consul can neither point a trusted key at another URL (the
worker's signed tunnel open would go there) nor keep an old URL alive past
its expiry.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from routing.errors import InvalidRequest
from routing.identity import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, Identity, from_text, to_text, verify

SERVICE = "infercdn-gateway"
URL, KEY, EXPIRES, SIGNATURE = "infercdn_url", "infercdn_key", "infercdn_expires", "infercdn_sig"
LIFETIME_S = 3600
MAX_URL = 512


def _signed(url: str, key: str, expires: int) -> bytes:
    return f"infercdn gateway v1\n{url}\n{key}\n{expires}".encode()


def service_id(identity: Identity) -> str:
    return f"gateway-{identity.fingerprint}"


def presence_meta(url: str, identity: Identity, now: float) -> dict[str, str]:
    expires = int(now + LIFETIME_S)
    key = identity.public_text
    signature = identity.sign(_signed(url, key, expires))
    return {URL: url, KEY: key, EXPIRES: str(expires), SIGNATURE: to_text(signature)}


@dataclass(frozen=True, slots=True)
class FoundGateway:
    url: str
    key: bytes  # its public key, one the worker trusts


def found_gateway(service: Any, trusted: Collection[bytes], now: float | None = None) -> FoundGateway:
    """The gateway a Consul ``Service`` announces; InvalidRequest unless it is signed by a trusted key,
    unexpired (at ``now``; default: the wall clock) and well formed."""
    now = time.time() if now is None else now
    meta = service.get("Meta") if isinstance(service, dict) else None
    if not isinstance(meta, dict):
        raise InvalidRequest("a gateway service without Meta")
    url, key_text = str(meta.get(URL, "")), str(meta.get(KEY, ""))
    expires_text, signature_text = str(meta.get(EXPIRES, "")), str(meta.get(SIGNATURE, ""))
    key, signature = from_text(key_text, PUBLIC_KEY_BYTES), from_text(signature_text, SIGNATURE_BYTES)
    if key is None or signature is None or not (expires_text.isascii() and expires_text.isdigit()):
        raise InvalidRequest("a gateway service with a malformed key, signature or expiry")
    if not (url.startswith(("http://", "https://")) and len(url) <= MAX_URL and url.isprintable()):
        raise InvalidRequest("a gateway service with a malformed URL")
    if key not in trusted:
        raise InvalidRequest(f"gateway key {key_text[:12]}… is not in this worker's gateway_keys")
    expires = int(expires_text)
    if not now <= expires <= now + LIFETIME_S + 60:
        raise InvalidRequest("a gateway service whose signature has expired (or is from the future)")
    if not verify(key, signature, _signed(url, key_text, expires)):
        raise InvalidRequest("a gateway service not signed by the key it names")
    return FoundGateway(url.rstrip("/"), key)
