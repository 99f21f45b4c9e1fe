"""The greedy gap threshold a fleet's audits suggest."""

from __future__ import annotations

from routing.gap_calibration import MAX_SERIES, GapBook


def test_spreads_per_model_and_worker_and_the_threshold_they_suggest() -> None:
    book = GapBook(keep=100)
    for i in range(200):  # only the last 100 are kept
        book.add("smollm2", "a", 5.0 if i < 100 else i / 1000)
    book.add("smollm2", "b", 0.73)
    book.add("gemma", "a", 0.05)
    spreads = {(s.model, s.worker_id): s for s in book.spreads()}
    a = spreads[("smollm2", "a")]
    assert a.checks == 100 and a.largest == 0.199 and a.p50 == 0.15 and a.p99 == 0.199
    assert book.suggested() == {"gemma": 0.1, "smollm2": 1.1}  # 0.73 x 1.5, rounded up to a tenth


def test_the_oldest_pair_goes_when_too_many_workers_were_seen() -> None:
    book = GapBook(keep=1)
    for i in range(MAX_SERIES + 1):
        book.add("m", f"w{i}", 0.1)
    ids = [s.worker_id for s in book.spreads()]
    assert len(ids) == MAX_SERIES and "w0" not in ids and f"w{MAX_SERIES}" in ids
