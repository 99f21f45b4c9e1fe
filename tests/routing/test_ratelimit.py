import pytest

from routing.errors import RateLimited
from routing.ratelimit import Limits, RateLimiter


def test_requests_per_minute_burst_then_refill() -> None:
    limiter, limits = RateLimiter(), Limits(requests_per_minute=3)
    for _ in range(3):
        limiter.admit("k", limits, tokens=0, now=0.0)
    with pytest.raises(RateLimited) as refused:
        limiter.admit("k", limits, tokens=0, now=1.0)
    assert refused.value.retry_after_s == 19  # one request refills in 20 s; 1 s has passed
    assert refused.value.headers()["x-ratelimit-remaining-requests"] == "0"
    limiter.admit("k", limits, tokens=0, now=20.0)
    limiter.admit("other", limits, tokens=0, now=1.0)  # keys are separate


def test_a_refused_request_takes_nothing() -> None:
    limiter, limits = RateLimiter(), Limits(requests_per_minute=10, tokens_per_minute=100)
    limiter.admit("k", limits, tokens=90, now=0.0)
    with pytest.raises(RateLimited):
        limiter.admit("k", limits, tokens=50, now=0.0)
    limiter.admit("k", limits, tokens=10, now=0.0)  # the requests bucket was not charged for the refusal


def test_more_tokens_than_a_minute_allows_is_refused_for_good() -> None:
    with pytest.raises(RateLimited, match="more than this key's"):
        RateLimiter().admit("k", Limits(tokens_per_minute=100), tokens=101, now=0.0)


def test_no_limits_means_no_limit() -> None:
    limiter = RateLimiter()
    for i in range(1000):
        limiter.admit("k", Limits(), tokens=10**6, now=float(i))


def test_reserved_tokens_are_settled_against_what_was_used() -> None:
    limiter, limits = RateLimiter(), Limits(tokens_per_minute=300)
    limiter.admit("k", limits, tokens=250, now=0.0)
    with pytest.raises(RateLimited):
        limiter.admit("k", limits, tokens=250, now=0.0)
    limiter.settle("k", limits, reserved=250, used=20, now=0.0)  # it used far less
    limiter.admit("k", limits, tokens=250, now=0.0)
    limiter.settle("k", limits, reserved=250, used=400, now=0.0)  # and far more: the debt is kept
    with pytest.raises(RateLimited):
        limiter.admit("k", limits, tokens=10, now=0.0)
