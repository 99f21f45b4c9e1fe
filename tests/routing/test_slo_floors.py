"""Per-model SLO floors: what an operator may write, and what a floor lets through."""

from __future__ import annotations

import pytest

from routing.settings import ConfigError
from routing.slo import SloReport
from routing.slo_floors import SloFloor, parse_slo_floors


def report(*, probes: int = 100, availability: float = 1.0, requests: int = 100, p99: float = 0.5) -> SloReport:
    return SloReport("1h", probes, availability, requests, 1.0, 0.1, p99, None)


def test_a_model_line_wins_over_the_star_line() -> None:
    floors = parse_slo_floors(["* min_availability=0.9", "big max_ttft_p99_s=2.5 min_availability=0.99"])
    assert floors.of("big") == SloFloor(0.99, 2.5)
    assert floors.of("small") == SloFloor(0.9, None)
    assert parse_slo_floors(["big min_availability=0.9"]).of("small") is None


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        ("m", "after the model"),
        ("m min_availability=1.5", "at most 1"),
        ("m min_availability=0", "above 0"),
        ("m max_ttft_p99_s=-1", "positive"),
        ("m max_ttft_p99_s=inf", "positive"),
        ("m max_ttft_p99_s=nan", "positive"),
        ("m max_ttft_p99_s=fast", "must be a number"),
        ("m availability=0.9", "expected one of"),
        ("m min_availability", "expected one of"),
    ],
)
def test_a_bad_line_is_refused_naming_what_is_wrong(line: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        parse_slo_floors([line])


def test_two_lines_for_one_model_are_refused() -> None:
    with pytest.raises(ConfigError, match="two lines"):
        parse_slo_floors(["m min_availability=0.9", "m max_ttft_p99_s=1"])


def test_a_floor_judges_only_what_has_enough_samples() -> None:
    floor = SloFloor(min_availability=0.95, max_ttft_p99_s=2.0)
    assert floor.met_by(report(), min_samples=20)
    assert not floor.met_by(report(availability=0.9), min_samples=20)
    assert not floor.met_by(report(p99=3.0), min_samples=20)
    assert floor.met_by(report(probes=5, availability=0.0, requests=5, p99=30.0), min_samples=20)  # no verdict yet
    assert floor.met_by(None, min_samples=20)  # not weighed yet
