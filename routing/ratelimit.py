"""Per-key limits on requests and tokens per minute (token buckets; the clock is passed in).

A bucket holds up to one minute's allowance and refills continuously, so a
client may burst up to its limit and then runs at the limit's pace. A
request is admitted only if both buckets hold enough; otherwise nothing is
taken and the caller learns how long to wait. Tokens are reserved from an
estimate at admission and settled against what the worker reports it used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from routing.errors import RateLimited


@dataclass(frozen=True, slots=True)
class Limits:
    requests_per_minute: int = 0  # 0 = unlimited
    tokens_per_minute: int = 0


@dataclass(slots=True)
class _Bucket:
    per_minute: int
    level: float
    stamp: float

    def refill(self, now: float) -> None:
        self.level = min(self.per_minute, self.level + (now - self.stamp) * self.per_minute / 60.0)
        self.stamp = now

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` is available (inf if it never fits)."""
        if amount > self.per_minute:
            return math.inf
        return max(0.0, (amount - self.level) * 60.0 / self.per_minute)


@dataclass(slots=True)
class RateLimiter:
    _buckets: dict[tuple[str, str], _Bucket] = field(default_factory=dict)

    def admit(self, key_id: str, limits: Limits, tokens: int, now: float) -> None:
        """Take one request and ``tokens`` from the key's buckets, or raise RateLimited."""
        wanted = (("requests", limits.requests_per_minute, 1), ("tokens", limits.tokens_per_minute, tokens))
        buckets = [(kind, self._bucket(key_id, kind, limit, now), amount) for kind, limit, amount in wanted if limit]
        waits = {kind: bucket.wait_for(amount) for kind, bucket, amount in buckets}
        if any(w > 0 for w in waits.values()):
            headers = {}
            for kind, bucket, _ in buckets:
                headers[f"x-ratelimit-limit-{kind}"] = str(bucket.per_minute)
                headers[f"x-ratelimit-remaining-{kind}"] = str(int(bucket.level))
                headers[f"x-ratelimit-reset-{kind}"] = f"{bucket.wait_for(bucket.per_minute):.0f}s"
            worst = max(waits, key=lambda k: waits[k])
            if math.isinf(waits[worst]):
                raise RateLimited(
                    f"This request needs {tokens} tokens, more than this key's {limits.tokens_per_minute} "
                    "tokens per minute; lower max_tokens or the prompt.",
                    retry_after_s=60,
                    headers=headers,
                )
            raise RateLimited(
                f"Rate limit reached for {worst} per minute on this API key; retry after the time in Retry-After.",
                retry_after_s=max(1, math.ceil(waits[worst])),
                headers=headers,
            )
        for _, bucket, amount in buckets:
            bucket.level -= amount

    def settle(self, key_id: str, limits: Limits, reserved: int, used: int, now: float) -> None:
        """Give back what ``admit`` reserved beyond what the request used (or take the excess)."""
        if not limits.tokens_per_minute or reserved == used:
            return
        bucket = self._bucket(key_id, "tokens", limits.tokens_per_minute, now)
        bucket.level = min(bucket.per_minute, bucket.level + reserved - used)

    def _bucket(self, key_id: str, kind: str, per_minute: int, now: float) -> _Bucket:
        bucket = self._buckets.get((key_id, kind))
        if bucket is None or bucket.per_minute != per_minute:
            bucket = self._buckets[(key_id, kind)] = _Bucket(per_minute, float(per_minute), now)
        bucket.refill(now)
        return bucket
