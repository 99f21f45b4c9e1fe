"""A verifier's entry in Consul: used only when proven with the fleet's verifier key, for its URL, unexpired."""

from __future__ import annotations

import pytest

from routing.errors import InvalidRequest
from routing.verifier_presence import LIFETIME_S, URL, presence_meta, verifier_url

KEY = "verifier-key-of-this-fleet-0123"
NOW = 1_800_000_000.0


def test_a_proven_entry_gives_its_url() -> None:
    meta = presence_meta("http://10.0.0.9:8090/", KEY, NOW)
    assert verifier_url({"Meta": meta}, KEY, NOW + 5) == "http://10.0.0.9:8090"


@pytest.mark.parametrize(
    "meta, now",
    [
        (presence_meta("http://10.0.0.9:8090", "another-fleets-verifier-key", NOW), NOW),
        ({**presence_meta("http://10.0.0.9:8090", KEY, NOW), URL: "http://10.6.6.6:8090"}, NOW),  # re-pointed
        (presence_meta("http://10.0.0.9:8090", KEY, NOW), NOW + LIFETIME_S + 1),  # expired
        (presence_meta("http://10.0.0.9:8090", KEY, NOW + 7200), NOW),  # from the future
        (presence_meta("file:///etc/passwd", KEY, NOW), NOW),
        ({}, NOW),
    ],
)
def test_anything_else_is_refused(meta: dict[str, str], now: float) -> None:
    with pytest.raises(InvalidRequest):
        verifier_url({"Meta": meta}, KEY, now)
