"""Warm-up after a start, with the clock passed in."""

from gateway.warm_up import WarmUp


def test_warming_until_the_time_has_passed_and_every_source_has_answered() -> None:
    warm_up = WarmUp(until=10.0, waiting_for={"consul"})
    assert warm_up.warming(9.9)
    assert warm_up.warming(10.1)  # Consul has not answered yet
    warm_up.answered("consul")
    assert warm_up.warming(9.9) and not warm_up.warming(10.1)
    assert not WarmUp().warming(0.0)  # neither registry nor Consul: nothing to wait for
