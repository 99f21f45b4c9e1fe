from routing.health import Failure, Health, HealthPolicy, Outliers

POLICY = HealthPolicy(failures_to_eject=3, base_ejection_s=5.0, max_ejection_s=40.0, max_ejected_share=0.5)


def healthy() -> Health:
    return Health(probation=False)


def test_consecutive_failures_eject_and_a_success_in_between_resets() -> None:
    outliers, h = Outliers(POLICY), healthy()
    outliers.failed("a", h, Failure.ERROR, now=0.0, fleet_size=10)
    outliers.failed("a", h, Failure.TIMEOUT, now=0.1, fleet_size=10)
    outliers.succeeded("a", h, now=0.2)
    outliers.failed("a", h, Failure.ERROR, now=0.3, fleet_size=10)
    outliers.failed("a", h, Failure.ERROR, now=0.4, fleet_size=10)
    assert not h.ejected
    outliers.failed("a", h, Failure.ERROR, now=0.5, fleet_size=10)
    assert h.ejected and h.ejected_until == 5.5
    assert outliers.ejected_count == 1


def test_a_connect_error_makes_it_unreachable_until_a_probe_gets_through() -> None:
    outliers, h = Outliers(POLICY), healthy()
    outliers.failed("a", h, Failure.CONNECT, now=0.0, fleet_size=10)
    assert not h.reachable and not h.ejected
    outliers.probed("a", h, reached=True, now=1.0)
    assert h.reachable


def test_return_needs_the_time_served_and_a_probe_then_probation() -> None:
    outliers, h = Outliers(POLICY), healthy()
    for i in range(3):
        outliers.failed("a", h, Failure.ERROR, now=float(i), fleet_size=10)
    assert h.ejected
    outliers.probed("a", h, reached=True, now=4.0)  # too early
    assert h.ejected
    outliers.probed("a", h, reached=False, now=8.0)  # time served, but unreachable
    assert h.ejected
    outliers.probed("a", h, reached=True, now=9.0)
    assert not h.ejected and h.probation
    assert outliers.ejected_count == 0
    # On probation a single failure ejects again, for twice as long.
    outliers.failed("a", h, Failure.TIMEOUT, now=10.0, fleet_size=10)
    assert h.ejected and h.ejected_until == 20.0


def test_backoff_doubles_and_is_capped() -> None:
    outliers, h = Outliers(POLICY), healthy()
    spans = []
    now = 0.0
    for _ in range(6):
        outliers.failed("a", h, Failure.ERROR, now=now, fleet_size=10)
        if not h.ejected:
            outliers.failed("a", h, Failure.ERROR, now=now, fleet_size=10)
            outliers.failed("a", h, Failure.ERROR, now=now, fleet_size=10)
        spans.append(h.ejected_until - now)
        now = h.ejected_until
        outliers.probed("a", h, reached=True, now=now)
    assert spans == [5.0, 10.0, 20.0, 40.0, 40.0, 40.0]


def test_no_more_than_the_capped_share_is_ejected() -> None:
    outliers = Outliers(POLICY)
    workers = [healthy() for _ in range(4)]
    for i, h in enumerate(workers):
        for _ in range(3):
            outliers.failed(str(i), h, Failure.ERROR, now=0.0, fleet_size=4)
    assert [h.ejected for h in workers] == [True, True, False, False]
