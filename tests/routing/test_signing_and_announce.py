import hashlib
import hmac

import pytest

from routing.announce import Hardware, Heartbeat, Registration, pack, unpack_heartbeat, unpack_registration
from routing.errors import Busy, InvalidRequest, Unauthorized
from routing.signing import ANNOUNCE, NONCE, SIGNATURE, TIMESTAMP, Signer, Verifier, derive_key, worker_access_token
from tests.routing.fleets import offer

TOKEN = "join-token-for-tests-0123456789"


def test_a_signed_message_verifies_once_within_the_window() -> None:
    headers = Signer(TOKEN).headers("POST", "/p", b"body", now=1000.0)
    verifier = Verifier(TOKEN, max_skew_s=30)
    verifier.verify("POST", "/p", headers, b"body", now=1010.0)
    with pytest.raises(Unauthorized, match="replay"):
        verifier.verify("POST", "/p", headers, b"body", now=1011.0)


@pytest.mark.parametrize(
    ("method", "path", "body", "now", "token"),
    [
        ("POST", "/p", b"other", 1000.0, TOKEN),  # body changed
        ("POST", "/q", b"body", 1000.0, TOKEN),  # path changed
        ("DELETE", "/p", b"body", 1000.0, TOKEN),  # method changed
        ("POST", "/p", b"body", 1031.0, TOKEN),  # stale
        ("POST", "/p", b"body", 1000.0, "another-token-0123456789"),  # wrong token
    ],
)
def test_anything_changed_is_refused(method: str, path: str, body: bytes, now: float, token: str) -> None:
    headers = Signer(TOKEN).headers("POST", "/p", b"body", now=1000.0)
    with pytest.raises(Unauthorized):
        Verifier(token).verify(method, path, headers, body, now)


def test_what_a_worker_is_shown_cannot_sign_for_the_fleet() -> None:
    credential = worker_access_token(TOKEN)
    assert credential == worker_access_token(TOKEN) and credential != worker_access_token(TOKEN + "x")
    forged = Signer(credential).headers("POST", "/p", b"body", now=1000.0)
    with pytest.raises(Unauthorized, match="signature"):
        Verifier(TOKEN).verify("POST", "/p", forged, b"body", now=1000.0)


@pytest.mark.parametrize("timestamp", ["nan", "inf", "-1", "1e3", "1000.5", " 1000", "\u0661\u0660\u0660\u0660"])
def test_only_whole_second_timestamps_are_accepted(timestamp: str) -> None:
    """A NaN timestamp passed the freshness check and expired at once: replayable forever."""
    signed = _signed_at(timestamp)
    with pytest.raises(Unauthorized, match="whole seconds"):
        Verifier(TOKEN).verify("POST", "/p", signed, b"body", now=1000.0)


def _signed_at(timestamp: str) -> dict[str, str]:
    """Headers signed properly with the join token, for any timestamp text (as a hostile worker could)."""
    key = derive_key(TOKEN, ANNOUNCE)
    mac = hmac.new(key, f"POST\n/p\n{timestamp}\nn1\n".encode() + b"body", hashlib.sha256).hexdigest()
    return {TIMESTAMP: timestamp, NONCE: "n1", SIGNATURE: mac}


def test_a_full_nonce_store_refuses_new_messages_rather_than_forget_a_fresh_nonce() -> None:
    verifier = Verifier(TOKEN, max_skew_s=30, max_nonces=2)
    first = Signer(TOKEN).headers("POST", "/p", b"body", now=1000.0)
    verifier.verify("POST", "/p", first, b"body", now=1000.0)
    verifier.verify("POST", "/p", Signer(TOKEN).headers("POST", "/p", b"body", now=1001.0), b"body", now=1001.0)
    with pytest.raises(Busy):
        verifier.verify("POST", "/p", Signer(TOKEN).headers("POST", "/p", b"body", now=1002.0), b"body", now=1002.0)
    with pytest.raises(Unauthorized, match="replay"):  # the first nonce is still remembered
        verifier.verify("POST", "/p", first, b"body", now=1020.0)
    # Once the first one's window has passed, it is forgotten and its slot is free again.
    later = Signer(TOKEN).headers("POST", "/p", b"body", now=1031.0)
    verifier.verify("POST", "/p", later, b"body", now=1031.0)
    with pytest.raises(Unauthorized, match="stale"):
        verifier.verify("POST", "/p", first, b"body", now=1031.0)


def test_registration_and_heartbeat_round_trip_as_msgpack() -> None:
    reg = Registration("w-1", "http://10.0.0.5:8081", "eu", "llama.cpp", Hardware("Xeon", 16, 2**34), 1, (offer(),))
    assert unpack_registration(pack(reg)) == reg
    beat = Heartbeat("w-1", in_flight=2, queued=5, tokens_per_second=42.5, kv_cache_usage=0.25)
    assert unpack_heartbeat(pack(beat)) == beat


@pytest.mark.parametrize(
    "data",
    [
        b"\xc1",  # not msgpack
        pack(Heartbeat("w-1", 0, 0)),  # a heartbeat is not a registration
        pack(Registration("bad/id", "http://x", "", "", Hardware(), 1, ())),
        pack(Registration("w", "ftp://x", "", "", Hardware(), 1, ())),
    ],
)
def test_malformed_registrations_are_400s(data: bytes) -> None:
    with pytest.raises(InvalidRequest):
        unpack_registration(data)
