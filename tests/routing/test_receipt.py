from __future__ import annotations

import dataclasses

import pytest

from routing.audit_record import SEAL_CONTEXT as AUDIT_CONTEXT
from routing.errors import InvalidRequest
from routing.identity import Identity
from routing.receipt import Receipt, seal, signed_by, unseal
from routing.sealing import seal_bytes

RECEIPT = Receipt(7, "e" * 32, "req-1", "w1", "smollm2", "Q4_1", 200, 12, 4, 9, 1_790_000_000.25, 0.75)


def test_a_sealed_receipt_reads_back_and_checks_against_its_gateways_key() -> None:
    gateway = Identity.generate()
    sealed = unseal(seal(RECEIPT, gateway.sign))
    assert sealed.receipt == RECEIPT
    assert signed_by(sealed, gateway.public_key)
    assert not signed_by(sealed, Identity.generate().public_key)


def test_a_changed_field_breaks_the_signature() -> None:
    gateway = Identity.generate()
    signature = unseal(seal(RECEIPT, gateway.sign)).signature
    inflated = dataclasses.replace(RECEIPT, completion_tokens=RECEIPT.completion_tokens + 1000)
    forged = seal_bytes(inflated.to_bytes(), b"", None) + seal(RECEIPT, gateway.sign).split(".")[1]
    assert unseal(forged).signature == signature
    assert not signed_by(unseal(forged), gateway.public_key)


def test_an_audit_records_signature_never_passes_for_a_receipt() -> None:
    gateway = Identity.generate()
    text = seal_bytes(RECEIPT.to_bytes(), AUDIT_CONTEXT, gateway.sign)
    assert not signed_by(unseal(text), gateway.public_key)


@pytest.mark.parametrize(
    "change",
    [
        {"seq": 0},
        {"status": 99},
        {"prompt_tokens": -1},
        {"completion_tokens": 10**9},
        {"at": float("nan")},
        {"model": "a\nb"},
        {"worker_id": ""},
    ],
)
def test_out_of_bounds_fields_are_refused(change: dict[str, object]) -> None:
    bad = dataclasses.replace(RECEIPT, **change)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest):
        unseal(seal(bad, Identity.generate().sign))


@pytest.mark.parametrize("text", ["", "abc", "a.b.c", "!!.AA", "x" * 5000 + ".", 42])
def test_malformed_text_is_refused(text: object) -> None:
    with pytest.raises(InvalidRequest):
        unseal(text)  # type: ignore[arg-type]
