"""Per-key token budgets per UTC day and calendar month (the wall clock is passed in).

A request reserves what it may cost (its prompt estimate plus its ``max_tokens``) and is refused
with 429 if that would take the key past a budget; at its end the reservation is replaced by what
the worker reported it used. A request without ``max_tokens`` may generate only what the key has
left (``remaining``: the gateway sets ``max_tokens`` to it), and reserves its prompt and a usual
answer's length, so that a key with plenty left is not held to one request at a time. The spent
figures start from the usage ledger and are set from it again every so often (``observe``):
gateways sharing a ledger see each other's spending within that interval, and a restart forgets
nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

from routing.errors import RateLimited

Period = Literal["day", "month"]
PERIODS: tuple[Period, ...] = ("day", "month")


@dataclass(frozen=True, slots=True)
class Budget:
    tokens_per_day: int = 0  # 0 = none
    tokens_per_month: int = 0

    def limit(self, period: Period) -> int:
        return self.tokens_per_day if period == "day" else self.tokens_per_month

    def __bool__(self) -> bool:
        return bool(self.tokens_per_day or self.tokens_per_month)


def period_bounds(period: Period, wall: float) -> tuple[float, float]:
    """The UTC day or calendar month holding ``wall``: its start and end, Unix seconds."""
    now = dt.datetime.fromtimestamp(wall, dt.UTC)
    if period == "day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        end = start + dt.timedelta(days=1)
    else:
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (start + dt.timedelta(days=32)).replace(day=1)
    return start.timestamp(), end.timestamp()


class BudgetExhausted(RateLimited):
    """OpenAI's answer to a spent quota: 429, ``insufficient_quota``."""

    error_type = "insufficient_quota"
    code = "insufficient_quota"


@dataclass(slots=True)
class _Account:
    starts: float  # the period it counts
    spent: int = 0  # settled: from the ledger, plus what finished here since
    reserved: int = 0  # requests in flight


@dataclass(slots=True)
class BudgetBook:
    _accounts: dict[tuple[str, Period], _Account] = field(default_factory=dict)

    def admit(self, key_id: str, budget: Budget, tokens: int, wall: float) -> dict[str, str]:
        """Reserve ``tokens`` in each of the key's budgets, or raise BudgetExhausted (nothing reserved).
        Returns the headers that tell the client what remains once this request is counted."""
        periods = [p for p in PERIODS if budget.limit(p)]
        accounts = {p: self._account(key_id, p, wall) for p in periods}
        remaining = {p: max(0, budget.limit(p) - accounts[p].spent - accounts[p].reserved) for p in periods}
        short = [p for p in periods if tokens > remaining[p]]

        def headers(after: int) -> dict[str, str]:
            told: dict[str, str] = {}
            for p in periods:
                told[f"x-budget-limit-tokens-{p}"] = str(budget.limit(p))
                told[f"x-budget-remaining-tokens-{p}"] = str(max(0, remaining[p] - after))
                told[f"x-budget-reset-tokens-{p}"] = f"{period_bounds(p, wall)[1] - wall:.0f}s"
            return told

        if short:
            # The longest wait decides: a spent month is not helped by tomorrow.
            period = max(short, key=lambda p: period_bounds(p, wall)[1])
            ends = period_bounds(period, wall)[1]
            raise BudgetExhausted(
                f"This API key's token budget for the {period} is spent: {remaining[period]} of {budget.limit(period)} "
                f"tokens remain and this request may need {tokens}. It resets at "
                f"{dt.datetime.fromtimestamp(ends, dt.UTC):%Y-%m-%d %H:%M} UTC; a smaller max_tokens may fit now.",
                retry_after_s=max(1, int(ends - wall) + 1),
                headers=headers(0),
            )
        for account in accounts.values():
            account.reserved += tokens
        return headers(tokens)

    def remaining(self, key_id: str, budget: Budget, wall: float) -> int:
        """What the key may still spend now: the least left in any of its budgets, less what is in flight."""
        return min(
            max(0, budget.limit(p) - account.spent - account.reserved)
            for p in PERIODS
            if budget.limit(p)
            for account in (self._account(key_id, p, wall),)
        )

    def settle(self, key_id: str, budget: Budget, reserved: int, used: int, wall: float) -> None:
        """Replace a reservation by what the request used (in the period it ended in)."""
        for p in PERIODS:
            if budget.limit(p):
                account = self._account(key_id, p, wall)
                account.reserved = max(0, account.reserved - reserved)
                account.spent += used

    def observe(self, key_id: str, period: Period, spent: int, as_of: float) -> None:
        """The ledger's figure for the key's current period (committed rows, all gateways sharing it)."""
        account = self._account(key_id, period, as_of)
        account.spent = spent

    def _account(self, key_id: str, period: Period, wall: float) -> _Account:
        starts = period_bounds(period, wall)[0]
        account = self._accounts.get((key_id, period))
        if account is None or account.starts != starts:
            # A new period: what is in flight still counts against it when it ends.
            reserved = account.reserved if account is not None else 0
            account = self._accounts[(key_id, period)] = _Account(starts, 0, reserved)
        return account
