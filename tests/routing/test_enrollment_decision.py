"""Operator decisions as gateways share them in Consul KV: only the admin key's MAC makes one."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.enrollment_decision import Decision, decision_key, seal, unseal
from routing.errors import InvalidRequest
from routing.identity import Identity

KEY = decision_key("admin-key-of-this-fleet")
DECISION = Decision("edge-7", Identity.generate().public_key, "revoked", 1_700_000_000)


def test_a_decision_reads_back_only_with_the_fleets_admin_key() -> None:
    assert unseal(seal(DECISION, KEY), KEY) == DECISION
    with pytest.raises(InvalidRequest, match="admin key"):
        unseal(seal(DECISION, decision_key("another-fleets-admin-key")), KEY)


@pytest.mark.parametrize(
    "field, value",
    [
        ("worker_id", "edge-8"),
        ("decision", "approved"),
        ("at", 1_700_000_001),
        ("key", Identity.generate().public_text),
    ],
)
def test_changing_any_field_breaks_the_mac(field: str, value: object) -> None:
    body = json.loads(seal(DECISION, KEY))
    body[field] = value
    with pytest.raises(InvalidRequest):
        unseal(json.dumps(body).encode(), KEY)


@pytest.mark.parametrize(
    "change",
    [{"decision": "deleted"}, {"at": 1.5}, {"at": -1}, {"at": True}, {"key": "short"}, {"worker_id": "a\nb"}],
)
def test_malformed_fields_are_refused_before_the_mac(change: dict[str, object]) -> None:
    body = {**json.loads(seal(DECISION, KEY)), **change}
    with pytest.raises(InvalidRequest):
        unseal(json.dumps(body).encode(), KEY)


@given(st.binary(max_size=2048))
def test_any_bytes_are_a_decision_or_a_clear_refusal(raw: bytes) -> None:
    with contextlib.suppress(InvalidRequest):  # anything else (a crash) fails the test
        unseal(raw, KEY)
