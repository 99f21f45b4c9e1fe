"""Token budgets per UTC day and month, on an injected wall clock."""

from __future__ import annotations

import datetime as dt

import pytest

from routing.budget import Budget, BudgetBook, BudgetExhausted, period_bounds


def at(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


def test_periods_are_the_utc_day_and_the_calendar_month() -> None:
    assert period_bounds("day", at("2026-11-22 13:05:00")) == (at("2026-11-22 00:00"), at("2026-11-23 00:00"))
    assert period_bounds("month", at("2026-11-22 13:05:00")) == (at("2026-11-01 00:00"), at("2026-12-01 00:00"))
    assert period_bounds("month", at("2026-12-31 23:59:59")) == (at("2026-12-01 00:00"), at("2027-01-01 00:00"))
    assert period_bounds("month", at("2028-02-29 12:00")) == (at("2028-02-01 00:00"), at("2028-03-01 00:00"))


def test_a_request_reserves_its_most_and_the_headers_say_what_remains() -> None:
    book, budget, now = BudgetBook(), Budget(tokens_per_day=100), at("2026-11-22 23:00")
    told = book.admit("k", budget, 30, now)
    assert told == {
        "x-budget-limit-tokens-day": "100",
        "x-budget-remaining-tokens-day": "70",
        "x-budget-reset-tokens-day": "3600s",
    }
    assert book.admit("k", budget, 60, now)["x-budget-remaining-tokens-day"] == "10"
    with pytest.raises(BudgetExhausted) as refused:
        book.admit("k", budget, 11, now)  # 10 left while both are in flight
    assert refused.value.status == 429 and refused.value.code == "insufficient_quota"
    assert refused.value.headers()["Retry-After"] == "3601"
    assert refused.value.headers()["x-budget-remaining-tokens-day"] == "10"
    book.settle("k", budget, 30, 12, now)  # the first used less than it reserved
    assert book.admit("k", budget, 28, now)["x-budget-remaining-tokens-day"] == "0"
    assert book.admit("other", budget, 100, now)  # keys do not share


def test_a_refused_request_reserves_nothing_and_a_new_day_starts_from_zero() -> None:
    book, budget = BudgetBook(), Budget(tokens_per_day=50, tokens_per_month=120)
    day_one, day_two, day_three = at("2026-11-20 10:00"), at("2026-11-21 10:00"), at("2026-11-22 10:00")
    book.admit("k", budget, 50, day_one)
    book.settle("k", budget, 50, 50, day_one)
    with pytest.raises(BudgetExhausted):
        book.admit("k", budget, 1, day_one)
    book.admit("k", budget, 50, day_two)
    book.settle("k", budget, 50, 50, day_two)
    with pytest.raises(BudgetExhausted) as refused:
        book.admit("k", budget, 30, day_three)  # the day has 50, the month only 20
    assert "month" in refused.value.message
    assert refused.value.retry_after_s == int(at("2026-12-01 00:00") - day_three) + 1  # the month decides
    assert book.admit("k", budget, 20, day_three)["x-budget-remaining-tokens-month"] == "0"


def test_the_ledger_figure_replaces_what_this_gateway_counted() -> None:
    book, budget, now = BudgetBook(), Budget(tokens_per_month=1000), at("2026-11-22 10:00")
    book.observe("k", "month", 990, now)  # spent through other gateways, or before a restart
    with pytest.raises(BudgetExhausted):
        book.admit("k", budget, 11, now)
    assert book.admit("k", budget, 10, now)["x-budget-remaining-tokens-month"] == "0"


def test_a_key_without_a_budget_is_never_refused() -> None:
    assert not Budget()
    assert BudgetBook().admit("k", Budget(), 10**9, at("2026-11-22 10:00")) == {}
