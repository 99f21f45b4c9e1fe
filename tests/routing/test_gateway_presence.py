"""A gateway's entry in Consul: trusted only when signed by a key the worker trusts, for its URL, unexpired."""

from __future__ import annotations

import pytest

from routing.errors import InvalidRequest
from routing.gateway_presence import LIFETIME_S, URL, found_gateway, presence_meta
from routing.identity import Identity

GATEWAY, STRANGER = Identity.generate(), Identity.generate()
NOW = 1_800_000_000.0


def service(meta: dict[str, str]) -> dict[str, object]:
    return {"ID": "gateway-x", "Meta": meta}


def test_a_signed_entry_from_a_trusted_key_gives_its_url() -> None:
    meta = presence_meta("https://gw1.example/", GATEWAY, NOW)
    found = found_gateway(service(meta), [GATEWAY.public_key], NOW + 10)
    assert (found.url, found.key) == ("https://gw1.example", GATEWAY.public_key)


@pytest.mark.parametrize(
    "meta, trusted, now",
    [
        (presence_meta("https://gw1.example", STRANGER, NOW), [GATEWAY.public_key], NOW),  # a key not trusted
        ({**presence_meta("https://gw1.example", GATEWAY, NOW), URL: "https://evil.example"}, None, NOW),  # re-pointed
        (presence_meta("https://gw1.example", GATEWAY, NOW), None, NOW + LIFETIME_S + 1),  # expired
        (presence_meta("https://gw1.example", GATEWAY, NOW + 7200), None, NOW),  # from the future
        (presence_meta("ftp://gw1.example", GATEWAY, NOW), None, NOW),
        ({}, None, NOW),
    ],
)
def test_anything_else_is_refused(meta: dict[str, str], trusted: list[bytes] | None, now: float) -> None:
    with pytest.raises(InvalidRequest):
        found_gateway(service(meta), trusted or [GATEWAY.public_key], now)
    with pytest.raises(InvalidRequest):
        found_gateway("not a service", [GATEWAY.public_key], now)
