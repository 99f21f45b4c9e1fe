"""The worker's receipt book on a real SQLite file: it keeps only what its gateway signed for it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from edge_worker.receipt_book import ReceiptBook
from routing.identity import Identity, to_text
from routing.receipt import seal
from tests.routing.test_receipt import RECEIPT


async def test_it_keeps_its_gateways_receipts_once_and_remembers_where_it_was(tmp_path: Path) -> None:
    gateway = Identity.generate()
    texts = tuple(seal(dataclasses.replace(RECEIPT, seq=n), gateway.sign) for n in (1, 2, 3))
    book = await ReceiptBook.open(tmp_path / "r.sqlite3", "w1")
    assert await book.accept(gateway.public_key, texts) == 3
    assert await book.accept(gateway.public_key, texts[1:]) == 0  # sent again: kept once
    await book.close()
    reopened = await ReceiptBook.open(tmp_path / "r.sqlite3", "w1")
    assert reopened.cursor(to_text(gateway.public_key)) == 3
    assert reopened.cursor(to_text(Identity.generate().public_key)) == 0
    await reopened.close()


async def test_it_refuses_forged_foreign_and_malformed_receipts(tmp_path: Path) -> None:
    gateway, impostor = Identity.generate(), Identity.generate()
    book = await ReceiptBook.open(tmp_path / "r.sqlite3", "w1")
    texts = (
        seal(RECEIPT, impostor.sign),  # not the gateway's signature
        seal(dataclasses.replace(RECEIPT, seq=2, worker_id="w2"), gateway.sign),  # another worker's
        "not a receipt",
    )
    assert await book.accept(gateway.public_key, texts) == 0
    assert book.refused == 3
    assert book.cursor(to_text(gateway.public_key)) == 0
    await book.close()
