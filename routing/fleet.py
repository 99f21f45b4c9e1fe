"""The fleet: every worker the gateway knows, its offers, indexed by model.

A pick looks up one model's offers (O(offers of that model)), never the
whole fleet. Workers and offers change while traffic flows; readers get
tuples, so a change never mutates what a request is iterating over.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from routing.capabilities import PLAIN, Capabilities
from routing.health import Health
from routing.latency import Ewma, PeakEwma
from routing.quantization import Quantization
from routing.slo import SloReport

# Until measured, assume a far worker and a slow model: a new worker must
# earn traffic with real samples (it is probed at once and on probation).
DEFAULT_RTT_S = 0.2
DEFAULT_SERVICE_S = 2.0
# A worker's own load report says something about now for this long (heartbeats and
# probes come every ~2 s); an older one is ignored rather than trusted forever.
LOAD_TTL_S = 10.0
# How the gateway reaches a worker: dials its URL, or uses the tunnel the worker dialled (it is behind NAT).
DIRECT = "direct"
TUNNEL = "tunnel"
VIAS = (DIRECT, TUNNEL)


@dataclass(frozen=True, slots=True)
class ModelOffer:
    """One model a worker has loaded, at one quantization."""

    model: str  # canonical id, e.g. "smollm2-135m-instruct"
    quantization: Quantization
    context_length: int
    runtime: str  # "llama.cpp", "vllm", …
    architecture: str = ""
    aliases: tuple[str, ...] = ()
    capabilities: Capabilities = PLAIN
    # SHA-256 (hex) of the weights file it claims to serve: what a verifier holding that file checks its
    # answers against. A worker that names one returns audit records (``routing.audit_record``).
    sha256: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        return (self.model, *self.aliases)

    def __str__(self) -> str:
        return f"{self.model}@{self.quantization.label}"


def describe_offers(offers: tuple[ModelOffer, ...]) -> str:
    return ", ".join(map(str, offers)) or "nothing"


@dataclass(frozen=True, slots=True)
class Worker:
    """One edge worker process, as the gateway addresses it."""

    id: str
    url: str  # base URL, without a trailing slash and without /v1
    region: str = ""
    capacity: int = 1  # generations it runs at once per model (llama.cpp: 1)
    runtime: str = ""
    hardware: str = ""  # described for people, e.g. "NVIDIA H100 (80 GiB)"
    source: str = "static"  # how the gateway learnt of it: static, upstream, registry, consul
    health_path: str = "/health"
    via: str = DIRECT
    # What the gateway shows it (Authorization: Bearer); never printed.
    bearer: str = field(default="", repr=False)


def authorization(worker: Worker) -> dict[str, str]:
    """The header that proves to a worker that a request comes from a gateway."""
    return {"Authorization": f"Bearer {worker.bearer}"} if worker.bearer else {}


@dataclass(frozen=True, slots=True)
class Load:
    """What a worker last said about its own load (all gateways' requests)."""

    in_flight: int = 0
    queued: int = 0
    kv_cache_usage: float | None = None  # 0..1 where the runtime knows it
    tokens_per_second: float | None = None
    reported_at: float | None = None

    def merged(self, newer: Load) -> Load:
        """``newer``, keeping what it does not say (a probe carries no tokens/s, an older worker no KV usage)."""
        return replace(
            newer,
            kv_cache_usage=self.kv_cache_usage if newer.kv_cache_usage is None else newer.kv_cache_usage,
            tokens_per_second=self.tokens_per_second if newer.tokens_per_second is None else newer.tokens_per_second,
        )

    def queue(self, now: float) -> int:
        """Requests the worker said it holds (all gateways'), while the report is fresh."""
        if self.reported_at is None or now - self.reported_at > LOAD_TTL_S:
            return 0
        return self.in_flight + self.queued


@dataclass(slots=True)
class WorkerState:
    """What changes about a worker while it serves."""

    worker: Worker
    offers: tuple[ModelOffer, ...] = ()
    in_flight: int = 0  # requests this gateway has open on it now
    health: Health = field(default_factory=Health)
    load: Load = field(default_factory=Load)
    rtt_s: Ewma = field(default_factory=lambda: Ewma(DEFAULT_RTT_S))
    # What its audits earned it (``routing.reputation``): routing divides its expected latency by this; 0: never.
    trust_weight: float = 1.0
    # Whether it keeps its SLOs (``routing.slo``): 1 while it does, less as it burns its error budget.
    slo_weight: float = 1.0
    # Its figures over the window routing uses, as of the last weighing (for per-model SLO floors).
    slo_report: SloReport | None = None
    # Per model: seconds one request takes once it starts (peak-EWMA of samples).
    service_s: dict[str, PeakEwma] = field(default_factory=dict)

    def pending(self, now: float) -> int:
        """Requests ahead of a new one: ours, live, or the worker's own fresh report (it sees other gateways)."""
        return max(self.in_flight, self.load.queue(now))

    def service_estimate(self, model: str) -> PeakEwma:
        estimate = self.service_s.get(model)
        if estimate is None:
            estimate = self.service_s[model] = PeakEwma(DEFAULT_SERVICE_S)
        return estimate


@dataclass(frozen=True, slots=True)
class Candidate:
    state: WorkerState
    offer: ModelOffer


@dataclass(slots=True)
class Fleet:
    _workers: dict[str, WorkerState] = field(default_factory=dict)
    _by_model: dict[str, tuple[Candidate, ...]] = field(default_factory=dict)

    def upsert(self, worker: Worker, offers: tuple[ModelOffer, ...]) -> WorkerState:
        """Add a worker, or replace what it offers; its live counters are kept."""
        state = self._workers.get(worker.id)
        if state is None:
            state = WorkerState(worker=worker, offers=offers)
            self._workers[worker.id] = state
        else:
            self._unindex(state)
            state.worker = worker
            state.offers = offers
        self._index(state)
        return state

    def remove(self, worker_id: str) -> bool:
        state = self._workers.pop(worker_id, None)
        if state is not None:
            self._unindex(state)
        return state is not None

    def __len__(self) -> int:
        return len(self._workers)

    def get(self, worker_id: str) -> WorkerState | None:
        return self._workers.get(worker_id)

    def workers(self) -> tuple[WorkerState, ...]:
        return tuple(self._workers.values())

    def candidates(self, model: str) -> tuple[Candidate, ...]:
        """Every (worker, offer) pair serving ``model`` under its id or an alias."""
        return self._by_model.get(model.lower(), ())

    def model_id(self, name: str) -> str | None:
        """The canonical id for a model id or alias the fleet serves; None for any other name."""
        candidates = self._by_model.get(name.lower())
        return candidates[0].offer.model if candidates else None

    def models(self) -> dict[str, tuple[Candidate, ...]]:
        """Canonical model id → its candidates (aliases folded in)."""
        out: dict[str, list[Candidate]] = {}
        for state in self._workers.values():
            for offer in state.offers:
                out.setdefault(offer.model, []).append(Candidate(state, offer))
        return {model: tuple(c) for model, c in out.items()}

    def _index(self, state: WorkerState) -> None:
        for offer in state.offers:
            for name in {n.lower() for n in offer.names}:
                self._by_model[name] = (*self._by_model.get(name, ()), Candidate(state, offer))

    def _unindex(self, state: WorkerState) -> None:
        for offer in state.offers:
            for name in {n.lower() for n in offer.names}:
                kept = tuple(c for c in self._by_model.get(name, ()) if c.state is not state)
                if kept:
                    self._by_model[name] = kept
                else:
                    self._by_model.pop(name, None)
