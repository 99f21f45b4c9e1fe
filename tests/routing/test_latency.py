from routing.latency import Ewma, PeakEwma


def test_first_sample_replaces_the_prior() -> None:
    e = Ewma(2.0)
    assert not e.measured
    e.observe(0.5, now=10.0)
    assert e.measured and e.value == 0.5


def test_old_samples_fade_with_time_not_count() -> None:
    quick, slow = Ewma(1.0, tau_s=10.0), Ewma(1.0, tau_s=10.0)
    quick.observe(1.0, now=0.0)
    slow.observe(1.0, now=0.0)
    quick.observe(3.0, now=1.0)  # a second later: mostly the old value
    slow.observe(3.0, now=100.0)  # long after: mostly the new one
    assert 1.0 < quick.value < 1.5
    assert 2.9 < slow.value <= 3.0


def test_peak_jumps_up_at_once_and_comes_down_gradually() -> None:
    e = PeakEwma(1.0, tau_s=10.0)
    e.observe(0.2, now=0.0)
    e.observe(4.0, now=0.5)
    assert e.value == 4.0
    e.observe(0.2, now=5.5)
    assert 0.2 < e.value < 4.0
    previous = e.value
    e.observe(0.2, now=30.0)
    assert 0.2 < e.value < previous
