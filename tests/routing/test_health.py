from routing.health import Failure, Health, HealthPolicy, Status, Verdict

POLICY = HealthPolicy(failures_to_eject=3, base_ejection_s=5.0, max_ejection_s=40.0, max_ejected_share=0.5)


def healthy() -> Health:
    return Health(status=Status.HEALTHY)


def fail(h: Health, now: float, kind: Failure = Failure.ERROR, *, may_eject: bool = True) -> Verdict:
    return h.failed(kind, now, POLICY, may_eject=may_eject)


def test_consecutive_failures_eject_and_a_success_in_between_resets() -> None:
    h = healthy()
    fail(h, 0.0)
    fail(h, 0.1, Failure.TIMEOUT)
    h.succeeded(0.2, POLICY)
    fail(h, 0.3)
    assert fail(h, 0.4) is Verdict.COUNTED and h.status is Status.HEALTHY
    assert fail(h, 0.5) is Verdict.EJECTED
    assert h.status is Status.EJECTED and h.ejected_until == 5.5 and not h.serving


def test_a_connect_error_makes_it_unreachable_until_a_probe_gets_through_then_probation() -> None:
    h = healthy()
    fail(h, 0.0, Failure.CONNECT)
    assert h.status is Status.UNREACHABLE and not h.reachable
    assert h.probed(reached=True, now=1.0)
    assert h.status is Status.PROBATION and h.serving


def test_return_needs_the_time_served_and_a_probe_then_probation() -> None:
    h = healthy()
    for i in range(3):
        fail(h, float(i))
    assert h.status is Status.EJECTED
    assert not h.probed(reached=True, now=4.0)  # too early
    assert h.status is Status.EJECTED
    h.probed(reached=False, now=5.0)  # unreachable before its time is served ...
    assert h.status is Status.UNREACHABLE
    assert not h.probed(reached=True, now=6.0)  # ... and reached again: still ejected until 7
    assert h.status is Status.EJECTED
    h.probed(reached=False, now=8.0)  # time served, but unreachable
    assert h.status is Status.UNREACHABLE
    assert h.probed(reached=True, now=9.0)
    assert h.status is Status.PROBATION
    # On probation a single failure ejects again, for twice as long.
    assert fail(h, 10.0, Failure.TIMEOUT) is Verdict.EJECTED
    assert h.ejected_until == 20.0


def test_backoff_doubles_and_is_capped_and_resets_after_a_quiet_spell() -> None:
    h = healthy()
    spans = []
    now = 0.0
    for _ in range(6):
        while fail(h, now) is not Verdict.EJECTED:
            pass
        spans.append(h.ejected_until - now)
        now = h.ejected_until
        h.probed(reached=True, now=now)
    assert spans == [5.0, 10.0, 20.0, 40.0, 40.0, 40.0]
    h.succeeded(now + POLICY.max_ejection_s + 1, POLICY)  # served well for longer than the longest ejection
    fail(h, now + 50)
    fail(h, now + 50)
    fail(h, now + 50)
    assert h.ejected_until - (now + 50) == 5.0


def test_a_failure_the_cap_holds_back_is_suppressed_and_the_worker_keeps_serving() -> None:
    h = healthy()
    verdicts = [fail(h, 0.0, may_eject=False) for _ in range(4)]
    assert verdicts == [Verdict.COUNTED, Verdict.COUNTED, Verdict.SUPPRESSED, Verdict.SUPPRESSED]
    assert h.status is Status.HEALTHY and h.total_ejections == 0


def test_failures_of_requests_still_in_flight_on_an_ejected_worker_change_nothing() -> None:
    h = healthy()
    for _ in range(3):
        fail(h, 0.0)
    until = h.ejected_until
    assert fail(h, 1.0) is Verdict.COUNTED
    assert (h.status, h.ejected_until, h.total_ejections) == (Status.EJECTED, until, 1)
