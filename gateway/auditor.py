"""Post-hoc audits of real traffic: a sample of delivered answers, checked against a reference.

After an answer is delivered, it is drawn for an audit with the probability
its worker's standing sets (``routing.reputation``); the draw is this
gateway's alone, so nothing tells a worker which of its answers are checked.
A drawn answer waits in a bounded queue (full: dropped and counted, never
holding a request) for a verifier holding the weights file the worker's offer
names (``gateway.verifiers``). The check:

1. the record contract, here: the worker's sealed record is present, signed
   by the key bound to its id, about this request, and agrees with what it
   reported (token counts; ``length`` means exactly ``max_tokens``; ``stop``
   means an end token or a stop string);
2. the reference, at the verifier: the prompt ids are what the client's
   request renders to, the completion ids spell the delivered text (or give
   the delivered tool calls, read back as the worker reads them), and each
   token's gap (greedy answers: flagged past ``gap_nats``) or the answer's Z
   (sampled answers, which feed the running Z).

The verdict moves the worker's standing through the balancer; a flag is
kept as evidence, and a conviction is stored with it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from gateway.conviction_store import Conviction, ConvictionStore, Evidence
from gateway.metrics import GatewayMetrics
from gateway.verifiers import Verifiers, VerifierUnavailable
from routing.audit_record import AuditRecord, signed_by, unseal
from routing.balancer import Balancer
from routing.errors import InvalidRequest
from routing.fleet import ModelOffer
from routing.gap_calibration import GapBook
from routing.openai_requests import GenerationRequest
from routing.openai_tools import MAX_TOOL_CALLS
from routing.reputation import Check, Standing
from routing.usage import Usage
from routing.verification import IMPOSSIBLE_GAP, MAX_TEXT_CHARS, DeliveredCall, Score, ScoreRequest, scorable

log = logging.getLogger(__name__)

EVIDENCE_PER_WORKER = 20


@dataclass(frozen=True, slots=True)
class Sample:
    """One delivered answer drawn for an audit."""

    worker_id: str
    offer: ModelOffer
    body: dict[str, Any]  # the client's request, as parsed
    request: GenerationRequest
    request_id: str
    sealed: str | None  # the worker's audit record
    text: str  # the content the client was sent
    calls: tuple[DeliveredCall, ...]  # the tool calls it was sent
    finish_reason: str
    usage: Usage


class Auditor:
    def __init__(
        self,
        balancer: Balancer,
        verifiers: Verifiers,
        metrics: GatewayMetrics,
        rng: random.Random,
        *,
        gap_nats: float,
        queue_size: int,
        key_of: Callable[[str], bytes | None],
        store: ConvictionStore,
        clock: Callable[[], float] = time.time,
    ):
        self._balancer = balancer
        self.verifiers = verifiers
        self._metrics = metrics
        self._rng = rng
        self.gap_nats = gap_nats
        self._queue: asyncio.Queue[Sample] = asyncio.Queue(queue_size)
        self._key_of = key_of
        self.store = store
        self._clock = clock
        self.evidence: dict[str, deque[Evidence]] = {}
        self.gaps = GapBook()  # greedy answers' largest gaps, for ``infercdn fleet calibrate``
        self._auditing = False

    def restore(self) -> None:
        """Convictions from before a restart: those workers get no traffic from the first request on."""
        for row in self.store.rows.values():
            self._balancer.convicted(row.worker_id, row.evidence[-1].reason if row.evidence else "", row.convicted_at)
            self.evidence[row.worker_id] = deque(row.evidence, maxlen=EVIDENCE_PER_WORKER)

    def consider(self, sample: Sample, *, forced: bool = False) -> None:
        """Draw the delivered answer for an audit, or not (``forced``: a canary, always); never blocks."""
        if not sample.offer.sha256:
            return  # it names no weights file: nothing to check it against (and no record was promised)
        if not scorable(sample.offer.runtime, sample.body, sample.request):
            return  # beyond what a reference for its runtime checks (a vLLM one: no top-p cut, penalties, tools)
        if not forced and self._rng.random() >= self._balancer.reputations.rate(sample.worker_id):
            return
        try:
            self._queue.put_nowait(sample)
        except asyncio.QueueFull:
            self._metrics.audits_dropped.labels("queue_full").inc()
        self._metrics.audit_queue.set(self._queue.qsize())

    @property
    def idle(self) -> bool:
        """Nothing waiting and nothing being checked."""
        return self._queue.empty() and not self._auditing

    async def run(self) -> None:
        while True:
            sample = await self._queue.get()
            self._metrics.audit_queue.set(self._queue.qsize())
            self._auditing = True
            try:
                await self.audit(sample)
            finally:
                self._auditing = False

    async def audit(self, sample: Sample) -> Check | None:
        """Check one answer; its verdict, or None when no verifier could (dropped and counted)."""
        record, check = self._contract(sample)
        if record is not None:
            url = self.verifiers.url_for(sample.offer.sha256)
            if url is None:
                self._metrics.audits_dropped.labels("no_verifier").inc()
                return None
            choice = record.choices[0]
            job = ScoreRequest(
                sample.body, record.prompt, choice.completion, choice.end_token, sample.text, sample.calls
            )
            started = time.monotonic()
            try:
                score = await self.verifiers.score(url, job)
            except VerifierUnavailable as exc:
                log.warning("audit of %s dropped: %s", sample.worker_id, exc.message)
                self._metrics.audits_dropped.labels("verifier_error").inc()
                return None
            self._metrics.verifier_seconds.observe(time.monotonic() - started)
            if score.greedy and score.prompt_matches and score.text_matches:
                self.gaps.add(sample.offer.model, sample.worker_id, score.max_gap)
            check = self._verdict(score)
            found = Evidence(
                self._clock(),
                sample.worker_id,
                sample.request_id,
                check.reason,
                score.max_gap_at if score.tokens else None,
                score.largest_gaps,
                score.z,
            )
        else:
            assert check is not None
            found = Evidence(self._clock(), sample.worker_id, sample.request_id, check.reason)
        await self._judge(sample.worker_id, check, found)
        return check

    def _contract(self, sample: Sample) -> tuple[AuditRecord | None, Check | None]:
        """The record's own checks: (the record, None) if it holds, else (None, a flagged check)."""
        if sample.sealed is None:
            return None, Check(True, reason="no audit record")
        try:
            sealed = unseal(sample.sealed)
        except InvalidRequest as exc:
            return None, Check(True, reason=f"a malformed audit record ({exc.message})")
        key = self._key_of(sample.worker_id)
        if key is not None and not signed_by(sealed, key):
            return None, Check(True, reason="an audit record not signed by the worker's key")
        problem = _disagreement(sealed.record, sample)
        if problem:
            return None, Check(True, reason=problem)
        return sealed.record, None

    def _verdict(self, score: Score) -> Check:
        if not score.prompt_matches:
            return Check(True, reason="the prompt ids are not what the request renders to")
        if not score.text_matches:
            return Check(True, reason="the completion ids do not spell the delivered text")
        if score.max_gap >= IMPOSSIBLE_GAP:
            return Check(True, score.z, reason=f"token {score.max_gap_at} could not have been sampled")
        if score.greedy and score.max_gap > self.gap_nats:
            return Check(True, reason=f"token {score.max_gap_at} is {score.max_gap:.2f} nats off the reference")
        return Check(False, score.z)

    async def _judge(self, worker_id: str, check: Check, found: Evidence) -> None:
        self._metrics.audits.labels("flagged" if check.flagged else "clean").inc()
        if check.flagged:
            log.warning("audit flagged %s on request %s: %s", worker_id, found.request_id, check.reason)
            self._keep(found)
        changed = self._balancer.judged(worker_id, check, self._clock())
        if changed in (Standing.SUSPECT, Standing.CONVICTED) and not check.flagged:
            # Its running Z crossed a line: this check tipped it, and is kept as the evidence, with that Z.
            reason = self._balancer.reputations.of(worker_id).last_reason
            log.warning("audits find %s %s: %s", worker_id, changed, reason)
            self._keep(replace(found, reason=reason))
        if changed is Standing.CONVICTED:
            log.error("worker %s convicted by audits: it gets no traffic until pardoned", worker_id)
            kept = tuple(self.evidence.get(worker_id, ()))
            await self.store.put(Conviction(worker_id, self._clock(), kept))

    def _keep(self, found: Evidence) -> None:
        self.evidence.setdefault(found.worker_id, deque(maxlen=EVIDENCE_PER_WORKER)).append(found)

    async def pardon(self, worker_id: str) -> bool:
        pardoned = self._balancer.pardon(worker_id, self._clock())
        if pardoned:
            self.evidence.pop(worker_id, None)
            await self.store.delete(worker_id)
        return pardoned


def _disagreement(record: AuditRecord, sample: Sample) -> str:
    """What in the record contradicts the answer the client got, if anything."""
    if record.worker_id != sample.worker_id or record.request_id != sample.request_id:
        return "an audit record for another worker or request"
    if len(record.choices) != sample.request.n:
        return "an audit record with the wrong number of choices"
    if len(record.prompt) != sample.usage.prompt_tokens:
        return "the record's prompt is not the reported prompt_tokens long"
    choice = record.choices[0]  # the one whose text and finish the gateway followed
    # vLLM counts the end-of-sequence token it stopped on as a completion token; llama.cpp does not.
    ends = sum(c.end_token is not None for c in record.choices) if sample.offer.runtime == "vllm" else 0
    if sum(len(c.completion) for c in record.choices) + ends != sample.usage.completion_tokens:
        return "the record's completions are not the reported completion_tokens long"
    wanted = sample.request.sampling.max_tokens
    fits = wanted is not None and len(record.prompt) + wanted <= sample.offer.context_length
    if sample.finish_reason == "length" and fits and len(choice.completion) != wanted:
        return "finish_reason length before max_tokens"
    ended = sample.finish_reason in ("stop", "tool_calls")  # calls are read from an answer that stopped
    if ended and choice.end_token is None and not sample.request.sampling.stop:
        return f"finish_reason {sample.finish_reason} with neither an end token nor a stop string"
    # What a verifier would refuse to read must not let an answer slip past its audit.
    offered = {t.name for t in sample.request.tools}
    if any(c.name not in offered for c in sample.calls) or len(sample.calls) > MAX_TOOL_CALLS:
        return "a tool call to a function the request did not offer"
    if len(sample.text) > MAX_TEXT_CHARS or any(len(c.arguments) > MAX_TEXT_CHARS for c in sample.calls):
        return "an answer longer than any record of it could be"
    return ""
