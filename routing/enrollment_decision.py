"""An operator's enrollment decision, as gateways share it through Consul KV.

With many gateways on one Consul, ``infercdn fleet approve|revoke|forget ID``
on any of them must hold on all of them. The gateway that took the decision
writes it to ``infercdn/enrollments/<worker id>`` in Consul KV; every gateway
watches that prefix and applies what it finds to its own store (which keeps
it across restarts). A decision is JSON with an HMAC-SHA256 keyed from the
admin key, which the fleet's gateways share and workers never hold: someone
who can write to Consul (every Consul worker can) cannot forge one. Deleting
a key un-decides nothing: a revocation is kept by each gateway for good.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass

from routing.announce import check_worker_id
from routing.errors import InvalidRequest
from routing.identity import PUBLIC_KEY_BYTES, from_text, to_text
from routing.signing import derive_key

KV_PREFIX = "infercdn/enrollments/"
DECISIONS = ("approved", "revoked", "forgotten")
MAX_BYTES = 1024
_PURPOSE = "infercdn enrollment decision v1"


@dataclass(frozen=True, slots=True)
class Decision:
    worker_id: str
    public_key: bytes  # the key the deciding gateway had bound to the id
    decision: str  # approved, revoked, forgotten
    at: int  # unix seconds


def decision_key(admin_key: str) -> bytes:
    return derive_key(admin_key, _PURPOSE)


def _canonical(decision: Decision) -> bytes:
    fields = [decision.worker_id, to_text(decision.public_key), decision.decision, decision.at]
    return json.dumps(fields, separators=(",", ":")).encode()


def seal(decision: Decision, key: bytes) -> bytes:
    mac = hmac.new(key, _canonical(decision), hashlib.sha256).hexdigest()
    body = {
        "worker_id": decision.worker_id,
        "key": to_text(decision.public_key),
        "decision": decision.decision,
        "at": decision.at,
        "mac": mac,
    }
    return json.dumps(body).encode()


def unseal(raw: bytes, key: bytes) -> Decision:
    """The decision ``raw`` holds; InvalidRequest if it is malformed or not made with this fleet's admin key."""
    if len(raw) > MAX_BYTES:
        raise InvalidRequest("an enrollment decision larger than any gateway writes")
    try:
        body = json.loads(raw)
        public_key = from_text(str(body["key"]), PUBLIC_KEY_BYTES)
        at = body["at"]
        decision = Decision(check_worker_id(str(body["worker_id"])), public_key or b"", str(body["decision"]), at)
        mac = str(body["mac"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidRequest(f"a malformed enrollment decision: {exc!r}") from None
    if public_key is None or decision.decision not in DECISIONS or type(at) is not int or not 0 <= at < 2**40:
        raise InvalidRequest("a malformed enrollment decision")
    expected = hmac.new(key, _canonical(decision), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(mac.encode(), expected.encode()):
        raise InvalidRequest("an enrollment decision not made with this fleet's admin key")
    return decision
