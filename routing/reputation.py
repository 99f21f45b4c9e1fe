"""Reputation: what audits of a worker's real answers have shown, as an explicit state.

Each worker (by id, which the registry binds to its key) is in one standing:

- **probation**: new; audited often, half weight, until ``probation_checks`` clean checks;
- **trusted**: audited rarely, full weight;
- **suspect**: one flagged check, or its running Z over the last ``window`` sampled checks below
  ``suspect_z``; audited a lot, low weight, trusted again after ``suspect_clean_checks`` clean ones;
- **convicted**: ``convict_flags`` flags among its last ``window`` checks, or that running Z below
  ``convict_z``: no traffic at all, until an operator pardons it.

A check is *flagged* when the verifier found a greedy answer's token far less
likely than the reference's choice, a prompt or text that does not match, or
the worker broke the record contract. Sampled answers add their Z, which is
about N(0, 1) for an honest worker: the running ``ΣZ/√n`` stays near 0 and
drifts down for a cheaper model. Pure: the clock is passed in.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum


class Standing(StrEnum):
    PROBATION = "probation"
    TRUSTED = "trusted"
    SUSPECT = "suspect"
    CONVICTED = "convicted"


@dataclass(frozen=True, slots=True)
class TrustPolicy:
    probation_checks: int = 50
    suspect_clean_checks: int = 200
    window: int = 50
    convict_flags: int = 3
    suspect_z: float = -3.0
    convict_z: float = -5.0
    probation_rate: float = 0.10
    trusted_rate: float = 0.03
    suspect_rate: float = 0.25
    probation_weight: float = 0.5
    suspect_weight: float = 0.3

    def rate(self, standing: Standing) -> float:
        """The share of its requests audited."""
        return {
            Standing.PROBATION: self.probation_rate,
            Standing.TRUSTED: self.trusted_rate,
            Standing.SUSPECT: self.suspect_rate,
            Standing.CONVICTED: 0.0,
        }[standing]

    def weight(self, standing: Standing) -> float:
        """What routing multiplies into a worker's appeal; 0: never chosen."""
        return {
            Standing.PROBATION: self.probation_weight,
            Standing.TRUSTED: 1.0,
            Standing.SUSPECT: self.suspect_weight,
            Standing.CONVICTED: 0.0,
        }[standing]


@dataclass(frozen=True, slots=True)
class Check:
    """One audit's verdict on one answer."""

    flagged: bool
    z: float | None = None  # a sampled answer's Z
    reason: str = ""  # why it was flagged, for people


@dataclass(slots=True)
class Reputation:
    standing: Standing = Standing.PROBATION
    since: float = 0.0  # when it entered this standing
    checks: int = 0
    flags: int = 0
    clean: int = 0  # clean checks in a row (what leaves probation or suspicion)
    last_reason: str = ""
    _recent_flags: deque[bool] = field(default_factory=deque)
    _recent_z: deque[float] = field(default_factory=deque)
    _recent_greedy: deque[bool] = field(default_factory=deque)  # of the last checks, which were greedy

    @property
    def recent_greedy(self) -> int:
        """Greedy checks among the last ``window``: what canaries top up (a greedy flag convicts fastest)."""
        return sum(self._recent_greedy)

    @property
    def running_z(self) -> float | None:
        """ΣZ/√n over the last sampled checks, or None before the first."""
        if not self._recent_z:
            return None
        return sum(self._recent_z) / math.sqrt(len(self._recent_z))

    def record(self, check: Check, now: float, policy: TrustPolicy) -> Standing | None:
        """Count one check; the new standing if it changed."""
        if self.standing is Standing.CONVICTED:
            return None  # only an operator clears a conviction
        self.checks += 1
        _push(self._recent_flags, check.flagged, policy.window)
        _push(self._recent_greedy, check.z is None, policy.window)
        if check.z is not None:
            _push(self._recent_z, check.z, policy.window)
        if check.flagged:
            self.flags += 1
            self.last_reason = check.reason
        z = self.running_z
        z_below = z is not None and z < policy.suspect_z
        if z_below and not check.flagged:
            self.last_reason = f"a running Z of {z:.2f} over its last {len(self._recent_z)} sampled checks"
        if sum(self._recent_flags) >= policy.convict_flags or (z is not None and z < policy.convict_z):
            return self._become(Standing.CONVICTED, now)
        if check.flagged or z_below:
            self.clean = 0
            return self._become(Standing.SUSPECT, now) if self.standing is not Standing.SUSPECT else None
        self.clean += 1
        needed = policy.suspect_clean_checks if self.standing is Standing.SUSPECT else policy.probation_checks
        if self.standing is not Standing.TRUSTED and self.clean >= needed:
            return self._become(Standing.TRUSTED, now)
        return None

    def convict(self, now: float, reason: str) -> None:
        """A conviction read back from storage (or an operator's)."""
        self.last_reason = reason
        self._become(Standing.CONVICTED, now)

    def _become(self, standing: Standing, now: float) -> Standing:
        self.standing, self.since = standing, now
        return standing


def _push(window: deque[bool] | deque[float], value: bool | float, size: int) -> None:
    window.append(value)  # type: ignore[arg-type]
    while len(window) > size:
        window.popleft()


@dataclass(slots=True)
class Reputations:
    """Every worker's reputation; with auditing off, everyone weighs 1 and nobody is checked."""

    policy: TrustPolicy = field(default_factory=TrustPolicy)
    enabled: bool = False
    _by_worker: dict[str, Reputation] = field(default_factory=dict)

    def of(self, worker_id: str) -> Reputation:
        reputation = self._by_worker.get(worker_id)
        if reputation is None:
            reputation = self._by_worker[worker_id] = Reputation()
        return reputation

    def get(self, worker_id: str) -> Reputation | None:
        return self._by_worker.get(worker_id)

    def weight(self, worker_id: str) -> float:
        if not self.enabled:
            return 0.0 if self.convicted(worker_id) else 1.0
        return self.policy.weight(self.of(worker_id).standing)

    def rate(self, worker_id: str) -> float:
        return self.policy.rate(self.of(worker_id).standing) if self.enabled else 0.0

    def convicted(self, worker_id: str) -> bool:
        known = self._by_worker.get(worker_id)
        return known is not None and known.standing is Standing.CONVICTED

    def pardon(self, worker_id: str, now: float) -> bool:
        """An operator's word: a convicted worker starts over, on probation. False if it was not convicted."""
        if not self.convicted(worker_id):
            return False
        self._by_worker[worker_id] = Reputation(since=now)
        return True

    def known(self) -> list[str]:
        return list(self._by_worker)

    def forget(self, worker_id: str) -> None:
        """Drop a departed worker's reputation (it starts on probation if it comes back); a conviction stays."""
        if not self.convicted(worker_id):
            self._by_worker.pop(worker_id, None)

    def items(self) -> list[tuple[str, Reputation]]:
        return sorted(self._by_worker.items())
