"""The balancer: an attempt plan per request, and what each attempt taught us.

``plan`` keeps the suitable offers (``routing.suitability``) of reachable
workers, drops ejected ones (unless so few are left that it panics and
ignores ejections, as Envoy does), lets the policy order them, puts the
client's region first and workers that just said "busy" last, and keeps the
first ``max_attempts``. Probation limits what is tried *first*, not what may
be tried: a worker on probation with a request in flight comes after the
ready ones, so a plan never ends early while a suitable worker is left.
The proxy (and the simulator) report every attempt back: ``attempt`` (or
``dispatch`` … ``finished``) around ``first_byte`` | ``failed`` | ``busy``.
Discovery's changes (``apply``) and probes (``probed``) come in here too,
so fleet and health state have one writer. The clock and the rng are passed
in, so plans are reproducible.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from routing.discovery import Change, Upsert
from routing.errors import ModelNotFound, NoSuitableWorker
from routing.fleet import DEFAULT_RTT_S, Candidate, Fleet, Load, WorkerState
from routing.health import Failure, Health, HealthPolicy, Status, Verdict
from routing.latency import Ewma
from routing.policies import Dispatch, ExpectedLatency, Policy
from routing.reputation import Check, Reputations, Standing
from routing.slo import SloBook
from routing.slo_floors import SloFloors
from routing.suitability import Requirements, suitable

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Balancer:
    fleet: Fleet
    rng: random.Random
    policy: Policy = field(default_factory=ExpectedLatency)
    health_policy: HealthPolicy = field(default_factory=HealthPolicy)
    max_attempts: int = 3
    reputations: Reputations = field(default_factory=Reputations)
    slos: SloBook = field(default_factory=SloBook)
    floors: SloFloors = field(default_factory=SloFloors)  # per-model minimums an operator set
    slo_routing: bool = True  # False: SLOs are measured and shown, but weigh nothing (a baseline)
    slo_every_s: float = 1.0  # how often SLO weights are worked out again (on a probe's arrival)
    # A worker gone this long is forgotten: its SLOs and its reputation (not a conviction). Ids are cheap to
    # make (each new key enrolls one), so what the gateway keeps about departed ones must not grow for good.
    forget_after_s: float = 7 * 86400.0
    _slo_weighed_at: float = float("-inf")
    _gone_since: dict[str, float] = field(default_factory=dict)
    panics: int = 0  # plans made in panic mode, for metrics
    suppressed_ejections: int = 0  # ejections the per-model cap held back, for metrics
    floors_unmet: int = 0  # plans where no worker met its model's SLO floor, so all were kept, for metrics

    def plan(self, req: Requirements, now: float) -> list[Candidate]:
        candidates = self.fleet.candidates(req.model)
        if not candidates:
            raise ModelNotFound(f"The model '{req.model}' does not exist or no worker serves it.", param="model")
        fitting = suitable(candidates, req)
        # A convicted worker never gets traffic, not even in panic mode.
        honest = [c for c in fitting if c.state.trust_weight > 0]
        if fitting and not honest:
            raise NoSuitableWorker(f"Every worker serving '{req.model}' was convicted of cheating by audits.")
        fitting = honest
        reachable = [c for c in fitting if c.state.health.reachable]
        if not reachable:
            raise NoSuitableWorker(
                f"No healthy worker serves '{req.model}' right now ({len(fitting)} suitable, none reachable)."
            )
        allowed = [c for c in reachable if c.state.health.serving]
        if len(allowed) < self.health_policy.panic_below_share * len(reachable):
            self.panics += 1
            allowed = reachable
        below = self._below_floor(req.model, allowed, now)
        # Tiers, each ordered by the policy: workers meeting the model's SLO floor before those
        # missing it; within each, ready workers before those on probation with a request in flight.
        tiers: dict[tuple[bool, bool], list[Candidate]] = {}
        for c in allowed:
            tiers.setdefault((c.state.worker.id in below, not _first_choice(c.state)), []).append(c)
        ordered = [c for tier in sorted(tiers) for c in self.policy.order(tiers[tier], now, self.rng)]
        if req.region or any(c.state.health.busy_until > now for c in ordered):
            ordered.sort(
                key=lambda c: (
                    c.state.worker.id in below,
                    not _first_choice(c.state),
                    bool(req.region) and c.state.worker.region != req.region,
                    c.state.health.busy_until > now,
                )
            )
        return ordered[: self.max_attempts]

    def models_below_floor(self, state: WorkerState) -> list[str]:
        """The models it offers whose SLO floor it misses (for the fleet view)."""
        return sorted({o.model for o in state.offers if not self._meets_floor(o.model, state)})

    def _meets_floor(self, model: str, state: WorkerState) -> bool:
        floor = self.floors.of(model)
        return floor is None or floor.met_by(state.slo_report, self.slos.policy.min_samples)

    def _below_floor(self, model: str, candidates: list[Candidate], now: float) -> set[str]:
        """Workers missing the model's SLO floor, tried only after those meeting it while one of
        those has a free slot. When they are all full, the floor steers nothing: piling requests
        onto the few that meet it would push them past the floor too, and the rest with them."""
        if self.floors.of(model) is None:
            return set()
        below = {c.state.worker.id for c in candidates if not self._meets_floor(model, c.state)}
        room = any(c.state.pending(now) < c.state.worker.capacity for c in candidates if c.state.worker.id not in below)
        if below and not room:
            self.floors_unmet += 1
            return set()
        return below

    @contextlib.contextmanager
    def attempt(self, candidate: Candidate, now: float) -> Iterator[Dispatch]:
        """One attempt on one worker; however it ends (even cancelled), it is ``finished``."""
        dispatch = self.dispatch(candidate, now)
        try:
            yield dispatch
        finally:
            self.finished(dispatch)

    def dispatch(self, candidate: Candidate, now: float) -> Dispatch:
        state = candidate.state
        ahead = state.pending(now)
        state.in_flight += 1
        return Dispatch(candidate, now, ahead)

    def first_byte(self, dispatch: Dispatch, now: float, *, streamed: bool = True) -> None:
        """The attempt answered: a latency sample, and a success for health.

        Only a stream's first byte is a time to first token for the SLOs; a whole answer (a plain
        completion, embeddings) took as long as its work did, and would blur the TTFT percentiles."""
        state = dispatch.candidate.state
        self.policy.observe(dispatch, now - dispatch.started, now)
        state.health.succeeded(now, self.health_policy)
        self.slos.of(state.worker.id).attempt(True, now - dispatch.started if streamed else None, now)

    def failed(self, dispatch: Dispatch, kind: Failure, now: float) -> None:
        state = dispatch.candidate.state
        if kind is Failure.TIMEOUT:
            # It took at least this long: let the estimate know, so it is avoided.
            self.policy.observe(dispatch, now - dispatch.started, now)
        self.slos.of(state.worker.id).attempt(False, None, now)
        verdict = state.health.failed(kind, now, self.health_policy, may_eject=self._may_eject(state))
        if verdict is Verdict.EJECTED:
            log.warning(
                "worker %s ejected until +%.0f s after repeated failures",
                state.worker.id,
                state.health.ejected_until - now,
            )
        elif verdict is Verdict.SUPPRESSED:
            self.suppressed_ejections += 1
            log.warning("worker %s keeps failing, but ejecting it would exceed the cap", state.worker.id)

    def busy(self, dispatch: Dispatch, retry_after_s: float, now: float) -> None:
        """It refused with 503 + Retry-After: full, not broken. Tried last for a while."""
        dispatch.candidate.state.health.busy_until = now + retry_after_s

    def finished(self, dispatch: Dispatch) -> None:
        dispatch.candidate.state.in_flight -= 1

    def report_load(self, state: WorkerState, load: Load, now: float) -> None:
        """A worker's own load report (heartbeat or probe), stamped as received and merged with the last."""
        state.load = state.load.merged(replace(load, reported_at=now))

    def apply(self, change: Change) -> bool:
        """Discovery's news; True if it changed the fleet. A worker that moved (or now comes through a tunnel)
        starts over, on probation."""
        if not isinstance(change, Upsert):
            return self.fleet.remove(change.worker_id)
        known = self.fleet.get(change.worker.id)
        if known is not None and known.worker == change.worker and known.offers == change.offers:
            return False
        moved = known is not None and (known.worker.url, known.worker.via) != (change.worker.url, change.worker.via)
        state = self.fleet.upsert(change.worker, change.offers)
        self._reweigh(change.worker.id)
        if moved:
            state.health, state.rtt_s = Health(), Ewma(DEFAULT_RTT_S)
        return True

    def probed(
        self,
        state: WorkerState,
        *,
        rtt_s: float | None,
        now: float,
        load: Load | None = None,
        reached: bool | None = None,
    ) -> None:
        """An active probe's result: its round trip (None: it did not get through) and reported load.

        ``reached`` without ``rtt_s``: it answered, but its round trip is measured elsewhere (a tunnel's pings)."""
        if rtt_s is not None:
            state.rtt_s.observe(rtt_s, now)
        if load is not None:
            self.report_load(state, load, now)
        answered = rtt_s is not None if reached is None else reached
        self.slos.of(state.worker.id).probe(answered, now)
        if state.health.probed(reached=answered, now=now):
            log.info("worker %s is back, on probation", state.worker.id)
        if now - self._slo_weighed_at >= self.slo_every_s:
            self.weigh_slos(now)

    def weigh_slos(self, now: float) -> None:
        """Every worker's routing weight from its SLOs, again."""
        self._slo_weighed_at = now
        present = {state.worker.id for state in self.fleet.workers()}
        self._forget_long_gone(present, now)
        verdicts = self.slos.judge(now, present)
        for state in self.fleet.workers():
            verdict = verdicts.get(state.worker.id)
            state.slo_report = verdict.report if verdict else None
            state.slo_weight = verdict.weight if verdict and self.slo_routing else 1.0

    def _forget_long_gone(self, present: set[str], now: float) -> None:
        for worker_id in [*self.slos.workers, *self.reputations.known()]:
            if worker_id in present:
                self._gone_since.pop(worker_id, None)
                continue
            if now - self._gone_since.setdefault(worker_id, now) > self.forget_after_s:
                self.slos.forget(worker_id)
                self.reputations.forget(worker_id)
                self._gone_since.pop(worker_id, None)

    def tunnel_rtt(self, worker_id: str, rtt_s: float, now: float) -> None:
        """A tunnel's ping came back: the worker's round trip, for routing."""
        state = self.fleet.get(worker_id)
        if state is not None:
            state.rtt_s.observe(rtt_s, now)

    def judged(self, worker_id: str, check: Check, now: float) -> Standing | None:
        """An audit's verdict on one of its answers; its new standing, if that changed."""
        changed = self.reputations.of(worker_id).record(check, now, self.reputations.policy)
        if changed is not None:
            log.warning("worker %s is now %s (%s)", worker_id, changed, check.reason or "clean checks")
            self._reweigh(worker_id)
        return changed

    def convicted(self, worker_id: str, reason: str, now: float) -> None:
        """A conviction kept from before a restart."""
        self.reputations.of(worker_id).convict(now, reason)
        self._reweigh(worker_id)

    def pardon(self, worker_id: str, now: float) -> bool:
        """An operator clears a conviction: the worker starts over on probation."""
        pardoned = self.reputations.pardon(worker_id, now)
        self._reweigh(worker_id)
        return pardoned

    def _reweigh(self, worker_id: str) -> None:
        state = self.fleet.get(worker_id)
        if state is None:
            return
        if any(offer.sha256 for offer in state.offers):
            state.trust_weight = self.reputations.weight(worker_id)
        else:  # nothing names weights a verifier could hold: audits cannot reach it either way
            state.trust_weight = 0.0 if self.reputations.convicted(worker_id) else 1.0

    def _may_eject(self, state: WorkerState) -> bool:
        """The cap, per model (as Envoy's per cluster): every model it serves keeps enough workers."""
        share = self.health_policy.max_ejected_share
        for offer in state.offers:
            peers = {c.state.worker.id: c.state.health.status for c in self.fleet.candidates(offer.model)}
            ejected = sum(1 for status in peers.values() if status is Status.EJECTED)
            if ejected + 1 > share * len(peers):
                return False
        return True


def _first_choice(state: WorkerState) -> bool:
    # On probation: one request at a time first, until one succeeds; others only as a fallback.
    return not (state.health.status is Status.PROBATION and state.in_flight > 0)
