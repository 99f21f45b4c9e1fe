"""A worker's registration as Consul service ``Meta``, signed with the worker's own key.

The whole registration, with when it was issued and when it expires, is one
msgpack blob; its base64url text is split over ``infercdn_reg_N`` keys (Consul
meta values are ≤ 512 characters, ≤ 64 keys). The signature (Ed25519, the
worker's key) covers the service id, the key and the blob: one canonical
encoding, so no value can forge another key, and the service id is bound to
the key as in the embedded registry. ``infercdn_enroll`` proves the join
token, for a key gateways have not seen yet; ``infercdn_handover`` carries a
rotated key's handover from the previous one (``routing.key_handover``). Gateways refuse an expired
blob, so an old capture cannot be registered again for long; the worker
renews it at half its life.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import asdict, dataclass
from typing import Any

import msgpack

from routing.announce import Registration, check_worker_id, registration_from_map
from routing.errors import InvalidRequest
from routing.identity import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, Identity, from_text, to_text, verify
from routing.signing import SignedMessage, derive_key, handover_in
from routing.wire import offer_to_json

CONSUL_ENROLLMENT = "infercdn consul enroll v2"
KEY = "infercdn_key"
SIGNATURE = "infercdn_sig"
ENROLL = "infercdn_enroll"
HANDOVER = "infercdn_handover"
CHUNK = "infercdn_reg_"
CHUNK_CHARS = 500
MAX_CHUNKS = 60  # Consul allows 64 meta keys; four are the key, signature, proof and handover
LIFETIME_S = 3600
MAX_SKEW_S = 60


@dataclass(frozen=True, slots=True)
class ConsulEntry:
    registration: Registration
    signed: SignedMessage  # who signed it, for the enrollment check


def _signed_bytes(service_id: str, key: str, blob: bytes) -> bytes:
    return f"infercdn consul v2\n{service_id}\n{key}\n".encode() + blob


def registration_to_meta(
    reg: Registration, identity: Identity, join_token: str, now: float, *, handover: str = ""
) -> dict[str, str]:
    offers = list(reg.offers)
    while True:
        body = {**asdict(reg), "offers": [offer_to_json(o, 0) for o in offers]}
        blob: bytes = msgpack.packb(
            {"registration": body, "issued_at": int(now), "expires_at": int(now + LIFETIME_S)}, use_bin_type=True
        )
        text = to_text(blob)
        if len(text) <= CHUNK_CHARS * MAX_CHUNKS or not offers:
            break
        offers.pop()  # too many offers for Consul's meta: the rest stay unannounced there
    key = identity.public_text
    signed = _signed_bytes(reg.worker_id, key, blob)
    meta = {f"{CHUNK}{i}": text[at : at + CHUNK_CHARS] for i, at in enumerate(range(0, len(text), CHUNK_CHARS))}
    meta[KEY] = key
    meta[SIGNATURE] = to_text(identity.sign(signed))
    meta[ENROLL] = hmac.new(derive_key(join_token, CONSUL_ENROLLMENT), signed, hashlib.sha256).hexdigest()
    if handover:
        meta[HANDOVER] = handover
    return meta


def entry_from_service(service: dict[str, Any], join_token: str, now: float) -> ConsulEntry:
    """Read a Consul health entry's ``Service``; InvalidRequest if unsigned, forged, expired or malformed."""
    try:
        service_id = check_worker_id(str(service["ID"]))
        meta = service.get("Meta") or {}
        if not isinstance(meta, dict):
            raise InvalidRequest("Meta is not a map")
        chunks = [meta.get(f"{CHUNK}{i}") for i in range(MAX_CHUNKS + 1)]
        count = chunks.index(None) if None in chunks else len(chunks)
        text = "".join(str(c) for c in chunks[:count])
        blob = from_text(text, len(text) * 3 // 4) if 0 < count <= MAX_CHUNKS else None
        key_text, signature_text = str(meta.get(KEY, "")), str(meta.get(SIGNATURE, ""))
        public_key, signature = from_text(key_text, PUBLIC_KEY_BYTES), from_text(signature_text, SIGNATURE_BYTES)
        if blob is None or public_key is None or signature is None:
            raise InvalidRequest(f"Consul service {service_id} carries no signed registration")
        signed = _signed_bytes(service_id, key_text, blob)
        if not verify(public_key, signature, signed):
            raise InvalidRequest(f"Consul service {service_id}'s registration is not signed by the key it names")
        payload = msgpack.unpackb(blob, raw=False, strict_map_key=True)
        issued, expires = int(payload["issued_at"]), int(payload["expires_at"])
        if not (issued - MAX_SKEW_S <= now <= expires and expires - issued <= LIFETIME_S):
            raise InvalidRequest(f"Consul service {service_id}'s registration has expired (or is from the future)")
        registration = registration_from_map(payload["registration"])
        if registration.worker_id != service_id:
            raise InvalidRequest(f"Consul service {service_id} carries another worker's registration")
        proof = str(meta.get(ENROLL, ""))
        expected = hmac.new(derive_key(join_token, CONSUL_ENROLLMENT), signed, hashlib.sha256).hexdigest()
        proven = hmac.compare_digest(proof.encode(), expected.encode())
        handed_over_by = handover_in(str(meta.get(HANDOVER, "")), public_key)
        return ConsulEntry(
            registration, SignedMessage(service_id, public_key, "", float(expires), proven, handed_over_by)
        )
    except (KeyError, TypeError, ValueError, AttributeError, msgpack.UnpackException) as exc:
        raise InvalidRequest(f"malformed Consul service entry: {exc!r}") from None
