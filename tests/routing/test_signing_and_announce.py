import pytest

from routing.announce import Hardware, Heartbeat, Registration, pack, unpack_heartbeat, unpack_registration
from routing.errors import Busy, InvalidRequest, Unauthorized
from routing.identity import Identity, to_text
from routing.signing import KEY as KEY_HEADER
from routing.signing import NONCE, SIGNATURE, TIMESTAMP, WORKER, SignedMessage, Signer, Verifier
from tests.routing.fleets import offer

TOKEN = "join-token-for-tests-0123456789"


KEY = Identity.generate()


def signed(now: float = 1000.0, *, key: Identity = KEY, worker_id: str = "w1", enroll: bool = False) -> dict[str, str]:
    return Signer(key, worker_id, TOKEN).headers("POST", "/p", b"body", now=now, enroll=enroll)


def check(headers: dict[str, str], now: float = 1000.0, *, verifier: Verifier | None = None) -> SignedMessage:
    verifier = verifier or Verifier(TOKEN)
    message = verifier.authenticate("POST", "/p", headers, b"body", now)
    verifier.remember(message, now)
    return message


def test_a_signed_message_names_its_key_and_verifies_once_within_the_window() -> None:
    verifier = Verifier(TOKEN, max_skew_s=30)
    headers = signed()
    message = check(headers, 1010.0, verifier=verifier)
    assert message.worker_id == "w1" and message.public_key == KEY.public_key and not message.enrollment_proven
    with pytest.raises(Unauthorized, match="replay"):
        check(headers, 1011.0, verifier=verifier)


def test_only_a_registration_signed_with_the_join_token_proves_enrollment() -> None:
    assert check(signed(enroll=True)).enrollment_proven
    other_fleet = Signer(KEY, "w1", "another-fleets-token-0123").headers("POST", "/p", b"body", 1000.0, enroll=True)
    assert not check(other_fleet).enrollment_proven


@pytest.mark.parametrize(
    ("method", "path", "body", "now"),
    [
        ("POST", "/p", b"other", 1000.0),  # body changed
        ("POST", "/q", b"body", 1000.0),  # path changed
        ("DELETE", "/p", b"body", 1000.0),  # method changed
        ("POST", "/p", b"body", 1031.0),  # stale
    ],
)
def test_anything_changed_is_refused(method: str, path: str, body: bytes, now: float) -> None:
    with pytest.raises(Unauthorized):
        Verifier(TOKEN).authenticate(method, path, signed(), body, now)


@pytest.mark.parametrize(
    "change",
    [
        {WORKER: "w2"},  # speaking for another id with the same signature
        {KEY_HEADER: Identity.generate().public_text},  # another key
        {SIGNATURE: "A" * 86},
        {KEY_HEADER: "not base64!"},
        {NONCE: "n\n1"},
    ],
)
def test_a_signature_binds_the_worker_id_and_key(change: dict[str, str]) -> None:
    with pytest.raises(Unauthorized):
        Verifier(TOKEN).authenticate("POST", "/p", {**signed(), **change}, b"body", 1000.0)


@pytest.mark.parametrize("timestamp", ["nan", "inf", "-1", "1e3", "1000.5", " 1000", "\u0661\u0660\u0660\u0660"])
def test_only_whole_second_timestamps_are_accepted(timestamp: str) -> None:
    """A NaN timestamp passed the freshness check and expired at once: replayable forever."""
    with pytest.raises(Unauthorized, match="whole seconds"):
        Verifier(TOKEN).authenticate("POST", "/p", _signed_at(timestamp), b"body", 1000.0)


def _signed_at(timestamp: str) -> dict[str, str]:
    """Headers signed properly by a worker's key, for any timestamp text (as a hostile worker could)."""
    canonical = f"infercdn v2\nPOST\n/p\n{timestamp}\nn1\nw1\n{KEY.public_text}\n".encode() + b"body"
    signature = to_text(KEY.sign(canonical))
    return {TIMESTAMP: timestamp, NONCE: "n1", WORKER: "w1", KEY_HEADER: KEY.public_text, SIGNATURE: signature}


def test_a_flood_spends_its_own_allowance_and_never_evicts_a_fresh_nonce() -> None:
    """A flood used to push captured nonces out of a fixed cache, making them replayable."""
    verifier = Verifier(TOKEN, max_skew_s=30, messages_per_second=1, burst=3)
    captured = signed(1000.0)
    check(captured, 1000.0, verifier=verifier)
    flooder = Identity.generate()
    with pytest.raises(Busy):
        for i in range(10_000):
            check(signed(1000.0 + i / 10_000, key=flooder, worker_id="w9"), 1000.0, verifier=verifier)
    with pytest.raises(Unauthorized, match="replay"):  # still remembered
        check(captured, 1020.0, verifier=verifier)
    check(signed(1020.0), 1020.0, verifier=verifier)  # the honest worker is not slowed by the flood
    with pytest.raises(Unauthorized, match="stale"):  # once its window is over, a stale check refuses it
        check(captured, 1031.0, verifier=verifier)


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
