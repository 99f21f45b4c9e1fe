import pytest

from routing.announce import Hardware, Heartbeat, Registration, pack, unpack_heartbeat, unpack_registration
from routing.errors import InvalidRequest, Unauthorized
from routing.signing import Signer, Verifier, worker_access_token
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


def test_the_gateway_credential_is_derived_not_the_token() -> None:
    credential = worker_access_token(TOKEN)
    assert TOKEN not in credential and credential == worker_access_token(TOKEN)
    assert credential != worker_access_token(TOKEN + "x")


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
