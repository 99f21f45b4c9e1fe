"""The SLO engine with an injected clock: windows, quantiles, burn-rate weights."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.slo import TTFT_EDGES, SloBook, SloPolicy, WorkerSlo, _median_without, weight


def test_availability_and_success_over_each_window_and_old_samples_fall_off() -> None:
    slo = WorkerSlo()
    for i in range(100):
        slo.probe(reached=i % 10 != 0, now=i * 30.0)  # 90 of 100 probes, over 50 min
        slo.attempt(ok=i % 4 != 0, ttft_s=0.2, now=i * 30.0)
    hour = slo.report("1h", 3000.0)
    assert hour.probes == 100 and hour.availability == pytest.approx(0.9)
    assert hour.success_ratio == pytest.approx(0.75)
    later = 3000.0 + 2 * 3600
    assert slo.report("1h", later).probes == 0  # two hours on: the hour window is empty
    assert slo.report("24h", later).availability == pytest.approx(0.9)  # the day still has them
    assert slo.report("30d", later + 40 * 86400).probes == 0


def test_ttft_quantiles_come_from_the_histogram_rounded_up() -> None:
    slo = WorkerSlo()
    for i in range(100):
        slo.attempt(ok=True, ttft_s=0.1 if i < 98 else 5.0, now=float(i))
    report = slo.report("1h", 100.0)
    assert 0.1 <= report.ttft_p50_s < 0.1 * 1.3 + 1e-9  # type: ignore[operator]
    assert 5.0 <= report.ttft_p99_s < 5.0 * 1.3 + 1e-9  # type: ignore[operator]
    slo.attempt(ok=True, ttft_s=10_000.0, now=101.0)
    assert slo.report("1h", 101.0).ttft_p99_s <= TTFT_EDGES[-1]  # type: ignore[operator]


def test_tokens_per_second_is_tokens_over_serving_time() -> None:
    slo = WorkerSlo()
    slo.served(100, 2.0, now=1.0)
    slo.served(50, 0.5, now=2.0)
    assert slo.report("1h", 3.0).tokens_per_second == pytest.approx(60.0)


def test_weight_is_one_over_the_burn_rate_and_never_zero() -> None:
    policy = SloPolicy(availability=0.99, success_ratio=0.99, min_weight=0.05)
    book = SloBook(policy)
    for i in range(200):
        book.of("steady").probe(True, float(i))
        book.of("flaky").probe(i % 10 != 0, float(i))  # up 90%: burns a 1% budget 10 times too fast
        book.of("dead").probe(False, float(i))
        if i < 5:
            book.of("new").probe(True, float(i))  # too few samples for a verdict
    weights = book.weights(200.0)
    assert weights["steady"] == 1.0 and weights["new"] == 1.0
    assert weights["flaky"] == pytest.approx(0.1)
    assert weights["dead"] == 0.05


def test_a_worker_much_slower_than_its_peers_loses_weight_in_proportion() -> None:
    book = SloBook(SloPolicy(ttft_p99_vs_peers=2.0))
    for i in range(100):
        for worker, ttft in (("a", 0.1), ("b", 0.1), ("c", 0.12), ("slow", 1.0)):
            book.of(worker).attempt(True, ttft, float(i))
    weights = book.weights(100.0)
    assert weights["a"] == weights["b"] == weights["c"] == 1.0
    assert weights["slow"] == pytest.approx(0.2, rel=0.35)  # about 2 times 0.1 / 1.0


def test_a_report_without_samples_judges_nothing() -> None:
    report = WorkerSlo().report("24h", 0.0)
    assert report.availability is None and report.ttft_p99_s is None
    assert weight(report, SloPolicy(), peers_ttft_p99_s=0.1) == 1.0


@given(st.lists(st.tuples(st.floats(0, 4 * 3600), st.booleans(), st.floats(0.001, 60)), max_size=300))
def test_running_totals_equal_a_fresh_count_of_the_window(samples: list[tuple[float, bool, float]]) -> None:
    slo, seen = WorkerSlo(), []
    for at, ok, ttft in sorted(samples):
        slo.attempt(ok, ttft, at)
        slo.probe(ok, at)
        slo.served(10, ttft, at)
        seen.append((at, ok, ttft))
    now = max((at for at, _, _ in seen), default=0.0) + 1.0
    window = slo.windows["1h"]
    report = slo.report("1h", now)
    live = [s for s in seen if s[0] >= window.buckets[0].start] if window.buckets else []
    assert report.requests == report.probes == len(live)
    assert report.success_ratio == (sum(ok for _, ok, _ in live) / len(live) if live else None)
    serving = sum(t for _, _, t in live)
    assert report.tokens_per_second == (pytest.approx(10 * len(live) / serving) if live else None)


@given(st.lists(st.floats(0.001, 100), min_size=1, max_size=30), st.data())
def test_the_median_of_the_others_leaves_exactly_one_copy_of_its_own_value_out(
    values: list[float], data: st.DataObject
) -> None:
    ordered = sorted(values)
    own = data.draw(st.sampled_from(values))
    others = list(ordered)
    others.remove(own)
    expected = others[len(others) // 2] if others else None
    assert _median_without(ordered, own) == expected
    assert _median_without(ordered, None) == ordered[len(ordered) // 2]
