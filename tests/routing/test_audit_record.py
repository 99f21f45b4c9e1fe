"""Audit records: sealed by the worker's key, read back bounded, and useless once tampered with."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.audit_record import MAX_IDS, AuditRecord, ChoiceIds, seal, signed_by, unseal
from routing.errors import InvalidRequest
from routing.identity import Identity, to_text

IDS = st.lists(st.integers(0, (1 << 31) - 1), max_size=50).map(tuple)
KEY = Identity.generate()


def record(prompt: tuple[int, ...] = (1, 2, 3), completion: tuple[int, ...] = (4, 5)) -> AuditRecord:
    return AuditRecord("req-1", "worker-a", "smollm2", prompt, (ChoiceIds(completion, 2),))


@given(IDS, IDS, st.none() | st.integers(0, 1 << 20))
def test_a_sealed_record_reads_back_whole_and_verifies_with_its_key_only(
    prompt: tuple[int, ...], completion: tuple[int, ...], end: int | None
) -> None:
    original = AuditRecord("r", "w", "m", prompt, (ChoiceIds(completion, end),))
    sealed = unseal(seal(original, KEY.sign))
    assert sealed.record == original
    assert signed_by(sealed, KEY.public_key)
    assert not signed_by(sealed, Identity.generate().public_key)


def test_a_changed_id_breaks_the_signature_and_an_unsigned_record_verifies_with_no_key() -> None:
    text = seal(record(), KEY.sign)
    _, signature = text.split(".")
    forged = AuditRecord("req-1", "worker-a", "smollm2", (1, 2, 3), (ChoiceIds((4, 6), 2),))
    swapped = unseal(to_text(forged.to_bytes()) + "." + signature)
    assert not signed_by(swapped, KEY.public_key)
    unsigned = unseal(seal(record(), None))
    assert unsigned.signature == b"" and not signed_by(unsigned, KEY.public_key)


@pytest.mark.parametrize(
    "obj",
    [
        [2, "r", "w", "m", [], [[[], None]]],  # unknown version
        [1, "r", "w", "m", [-1], [[[], None]]],  # negative id
        [1, "r", "w", "m", [1 << 31], [[[], None]]],  # id past 31 bits
        [1, "r", "w", "m", [True], [[[], None]]],  # a bool is not an id
        [1, "r", "w", "m", [], []],  # no choices
        [1, "r\nforged log line", "w", "m", [], [[[], None]]],  # newline in a string
        [1, "r", "w", "m", [], [[[], "eos"]]],  # end token not an id
        {"version": 1},  # not an array
    ],
)
def test_malformed_records_are_refused(obj: object) -> None:
    text = to_text(msgpack.packb(obj)) + "."
    with pytest.raises(InvalidRequest):
        unseal(text)


def test_oversized_and_garbled_records_are_refused() -> None:
    too_many = [1, "r", "w", "m", [1] * (MAX_IDS + 1), [[[], None]]]
    for text in (to_text(msgpack.packb(too_many)) + ".", "not base64!.", "abc", "a.b.c", "x" * (9 << 20) + "."):
        with pytest.raises(InvalidRequest):
            unseal(text)
