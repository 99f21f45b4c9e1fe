"""The gateway's Prometheus metrics, in a registry owned by one app.

Label values are bounded: models are those the fleet serves (anything else
is "unknown"), workers are the fleet's, statuses are HTTP codes; values that
come from workers are capped (``metric_label_values`` distinct ones per label,
the rest "other") and forgotten when the fleet no longer has them. Request
ids, prompts and API keys never become labels. Per-worker and fleet gauges are
read from the fleet at scrape time, so a worker that leaves leaves them.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter as Tally
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from gateway.metric_labels import OTHER, LabelCap, most_common
from routing.balancer import Balancer
from routing.fleet import WorkerState
from routing.health import Status
from routing.reputation import Standing
from routing.slo import WINDOWS
from routing.telemetry import LATENCY_BUCKETS, OVERHEAD_BUCKETS


@dataclass(frozen=True, slots=True)
class ModelSeries:
    ttft: Histogram
    duration: Histogram
    prompt_tokens: Counter
    completion_tokens: Counter


class GatewayMetrics:
    def __init__(self, balancer: Balancer, *, label_values: int = 200):
        self._balancer = balancer
        self._models = LabelCap(label_values)
        self._workers = LabelCap(label_values)
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        GCCollector(registry=r)  # python_gc_*: how often the collector runs, and what it frees
        self.requests = Counter(
            "infercdn_gateway_requests",
            "Requests answered, by model, HTTP status and outcome (served, failed_over, failed, rejected, "
            "client_closed).",
            ["model", "status", "outcome"],
            registry=r,
        )
        self.ttft = Histogram(
            "infercdn_gateway_time_to_first_token_seconds",
            "From the request's arrival to the first byte of the answer (a non-streaming answer: all of it).",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.duration = Histogram(
            "infercdn_gateway_request_duration_seconds",
            "From the request's arrival to its last byte.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter(
            "infercdn_gateway_prompt_tokens", "Prompt tokens, as workers reported.", ["model"], registry=r
        )
        self.completion_tokens = Counter(
            "infercdn_gateway_completion_tokens", "Completion tokens, as workers reported.", ["model"], registry=r
        )
        # Usage by who served and who asked (the ledger's split, live): workers are bounded by enrollments,
        # keys by the keys file; "open" for a gateway without keys.
        self.usage_tokens = Counter(
            "infercdn_gateway_usage_tokens",
            "Tokens served, by worker, client key id and kind (prompt, completion), as workers reported.",
            ["worker", "key", "kind"],
            registry=r,
        )
        self._usage: dict[tuple[str, str], tuple[Counter, Counter]] = {}
        self.usage_overclaims = Counter(
            "infercdn_gateway_usage_overclaims",
            "Answers whose worker claimed more tokens than the request could use (cut to that; logged with the "
            "worker's id).",
            registry=r,
        )
        self.failovers = Counter(
            "infercdn_gateway_failovers",
            "Attempts that failed before the first byte and moved on (or gave up), by reason.",
            ["reason"],
            registry=r,
        )
        self.decisions = Counter(
            "infercdn_gateway_routing_decisions", "Attempts sent, by worker.", ["worker"], registry=r
        )
        self.overhead = Histogram(
            "infercdn_gateway_overhead_seconds",
            "Time spent in the gateway itself before a request leaves for its first worker "
            "(reading, parsing, authenticating, planning).",
            buckets=OVERHEAD_BUCKETS,
            registry=r,
        )
        self.audits = Counter(
            "infercdn_gateway_audits",
            "Answers checked against a verifier's reference (or the record contract), by result: clean, flagged.",
            ["result"],
            registry=r,
        )
        self.audits_dropped = Counter(
            "infercdn_gateway_audits_dropped",
            "Answers drawn for an audit but not checked, by reason: queue_full, no_verifier, verifier_error.",
            ["reason"],
            registry=r,
        )
        self.audit_queue = Gauge("infercdn_gateway_audit_queue", "Audits waiting for a verifier.", registry=r)
        self.canaries = Counter(
            "infercdn_gateway_canaries",
            "Synthetic greedy requests sent to workers with few greedy audits, by outcome: sent, failed.",
            ["outcome"],
            registry=r,
        )
        self.verifier_seconds = Histogram(
            "infercdn_gateway_verifier_seconds",
            "How long a verifier took to score one answer.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ledger_entries = Counter(
            "infercdn_gateway_ledger_entries", "Requests committed to the usage ledger.", registry=r
        )
        self.ledger_pending = Gauge(
            "infercdn_gateway_ledger_pending", "Requests waiting to be committed to the ledger.", registry=r
        )
        self.ledger_errors = Counter(
            "infercdn_gateway_ledger_errors", "Ledger batch writes that failed (each is retried).", registry=r
        )
        self.ledger_dropped = Counter(
            "infercdn_gateway_ledger_dropped",
            "Requests not recorded because the ledger's backlog was full (the database was down too long).",
            registry=r,
        )
        self.ledger_late = Counter(
            "infercdn_gateway_ledger_late",
            "Answers finished before their ledger commit (it took longer than ledger_wait_s); still recorded.",
            registry=r,
        )
        self.ledger_batch_seconds = Histogram(
            "infercdn_gateway_ledger_batch_seconds",
            "How long one ledger batch took to commit.",
            buckets=OVERHEAD_BUCKETS,
            registry=r,
        )
        r.register(FleetCollector(balancer, label_values))
        self._by_model: dict[str, ModelSeries] = {}
        self._requests: dict[tuple[str, str, str], Counter] = {}

    def count_request(self, model: str, status: int, outcome: str) -> None:
        """One request answered; the child is looked up once (models are the fleet's, statuses few)."""
        key = (self._models(model), str(status), outcome)
        child = self._requests.get(key)
        if child is None:
            child = self._requests[key] = self.requests.labels(*key)
        child.inc()

    def count_decision(self, worker: str) -> None:
        self.decisions.labels(self._workers(worker)).inc()

    def count_usage(self, worker: str, key: str, prompt_tokens: int, completion_tokens: int) -> None:
        worker = self._workers(worker)
        children = self._usage.get((worker, key))
        if children is None:
            children = self._usage[(worker, key)] = (
                self.usage_tokens.labels(worker, key or "open", "prompt"),
                self.usage_tokens.labels(worker, key or "open", "completion"),
            )
        children[0].inc(prompt_tokens)
        children[1].inc(completion_tokens)

    def for_model(self, model: str) -> ModelSeries:
        """The per-model children, looked up once (labels() costs a lock and a hash per call)."""
        model = self._models(model)
        series = self._by_model.get(model)
        if series is None:
            series = self._by_model[model] = ModelSeries(
                ttft=self.ttft.labels(model),
                duration=self.duration.labels(model),
                prompt_tokens=self.prompt_tokens.labels(model),
                completion_tokens=self.completion_tokens.labels(model),
            )
        return series

    def forget_departed(self) -> None:
        """Remove the series of workers that left and of models nobody serves any more (before a scrape)."""
        workers = self._balancer.fleet.workers()
        served = {offer.model for s in workers for offer in s.offers}
        for model in self._models.keep_only(served | {"unknown"}):
            for key in [key for key in self._requests if key[0] == model]:
                self.requests.remove(*key)
                del self._requests[key]
            if self._by_model.pop(model, None) is not None:
                for family in (self.ttft, self.duration, self.prompt_tokens, self.completion_tokens):
                    family.remove(model)
        for worker in self._workers.keep_only(s.worker.id for s in workers):
            with contextlib.suppress(KeyError):
                self.decisions.remove(worker)
            for pair in [pair for pair in self._usage if pair[0] == worker]:
                for kind in ("prompt", "completion"):
                    self.usage_tokens.remove(worker, pair[1] or "open", kind)
                del self._usage[pair]


class FleetCollector(Collector):
    """Per-worker state and fleet size, read from the balancer at scrape time."""

    def __init__(self, balancer: Balancer, label_values: int):
        self._balancer = balancer
        self._label_values = label_values

    def _slos(self, workers: tuple[WorkerState, ...]) -> Iterator[Metric]:
        """Each worker's SLO figures per window (1h, 24h, 30d), and the routing weight they earn it."""
        now = time.monotonic()  # the event loop's clock (asyncio reads time.monotonic), also outside the loop
        families = {
            name: GaugeMetricFamily(f"infercdn_gateway_worker_slo_{name}", text, labels=["worker", "window"])
            for name, text in (
                ("availability", "Share of the gateway's probes the worker answered."),
                ("success_ratio", "Share of attempts on the worker that answered."),
                ("ttft_p99_seconds", "99th percentile of time to first byte of attempts on the worker."),
            )
        }
        slo_weight = GaugeMetricFamily(
            "infercdn_gateway_worker_slo_weight",
            "Routing weight from SLOs: 1 when met, less as the budget burns.",
            labels=["worker"],
        )
        for s in workers:
            slo_weight.add_metric([s.worker.id], s.slo_weight)
            for window in WINDOWS:
                report = self._balancer.slos.of(s.worker.id).report(window.name, now)
                for name, value in (
                    ("availability", report.availability),
                    ("success_ratio", report.success_ratio),
                    ("ttft_p99_seconds", report.ttft_p99_s),
                ):
                    if value is not None:
                        families[name].add_metric([s.worker.id, window.name], value)
        yield from (*families.values(), slo_weight)

    def collect(self) -> Iterator[Metric]:
        workers = self._balancer.fleet.workers()
        up = GaugeMetricFamily(
            "infercdn_gateway_worker_healthy",
            "1 if the worker gets traffic (reachable, not ejected).",
            labels=["worker"],
        )
        state = GaugeMetricFamily(
            "infercdn_gateway_worker_state",
            "1 for the worker's health state: healthy, probation, ejected, unreachable.",
            labels=["worker", "state"],
        )
        rtt = GaugeMetricFamily("infercdn_gateway_worker_rtt_seconds", "Probe round trip (EWMA).", labels=["worker"])
        in_flight = GaugeMetricFamily(
            "infercdn_gateway_worker_in_flight", "This gateway's requests open on the worker.", labels=["worker"]
        )
        queued = GaugeMetricFamily(
            "infercdn_gateway_worker_queued", "Requests the worker says are waiting.", labels=["worker"]
        )
        ejections = CounterMetricFamily(
            "infercdn_gateway_worker_ejections", "Times the worker was ejected for failing.", labels=["worker"]
        )
        fleet = Tally[tuple[str, str, str, str]]()
        for s in workers:
            wid = s.worker.id
            up.add_metric([wid], 1.0 if s.health.serving else 0.0)
            for status in Status:
                state.add_metric([wid, status.value], 1.0 if s.health.status is status else 0.0)
            if s.rtt_s.measured:
                rtt.add_metric([wid], s.rtt_s.value)
            in_flight.add_metric([wid], s.in_flight)
            queued.add_metric([wid], s.load.queued)
            ejections.add_metric([wid], s.health.total_ejections)
            for offer in s.offers:
                fleet[
                    (offer.model, offer.quantization.label, s.worker.region, "true" if s.health.serving else "false")
                ] += 1
        sizes = GaugeMetricFamily(
            "infercdn_gateway_fleet_workers",
            "Workers offering a model, by quantization, region and health.",
            labels=["model", "quantization", "region", "healthy"],
        )
        for labels, count in sorted(self._capped(fleet).items()):
            sizes.add_metric(list(labels), count)
        panics = CounterMetricFamily(
            "infercdn_gateway_panic_plans", "Plans made ignoring ejections because too few workers were left."
        )
        panics.add_metric([], self._balancer.panics)
        suppressed = CounterMetricFamily(
            "infercdn_gateway_ejections_suppressed",
            "Ejections earned by failures but held back by the per-model cap (max_ejected_share).",
        )
        suppressed.add_metric([], self._balancer.suppressed_ejections)
        floors_unmet = CounterMetricFamily(
            "infercdn_gateway_slo_floor_unmet_plans",
            "Plans where no worker met the model's SLO floor (model_slos), so every worker was kept.",
        )
        floors_unmet.add_metric([], self._balancer.floors_unmet)
        yield from (up, state, rtt, in_flight, queued, ejections, sizes, panics, suppressed, floors_unmet)
        yield from self._slos(workers)
        if self._balancer.reputations.enabled:
            yield from self._trust(workers)

    def _capped(self, fleet: Tally[tuple[str, str, str, str]]) -> Tally[tuple[str, str, str, str]]:
        """The same counts with each worker-named label (model, quantization, region) kept to its most common
        values, the rest summed as "other"."""
        kept: list[set[str]] = []
        for column in range(3):
            tally = Tally[str]()
            for labels, count in fleet.items():
                tally[labels[column]] += count
            kept.append(most_common(tally, self._label_values))
        capped = Tally[tuple[str, str, str, str]]()
        for labels, count in fleet.items():
            named = [value if value in kept[column] else OTHER for column, value in enumerate(labels[:3])]
            capped[(named[0], named[1], named[2], labels[3])] += count
        return capped

    def _trust(self, workers: tuple[WorkerState, ...]) -> Iterator[Metric]:
        book = self._balancer.reputations
        standing = GaugeMetricFamily(
            "infercdn_gateway_worker_standing",
            "1 for the worker's standing from audits: probation, trusted, suspect, convicted.",
            labels=["worker", "standing"],
        )
        checks = CounterMetricFamily(
            "infercdn_gateway_worker_audits", "Audits of the worker's answers.", labels=["worker"]
        )
        flags = CounterMetricFamily("infercdn_gateway_worker_audit_flags", "Audits that flagged it.", labels=["worker"])
        z = GaugeMetricFamily(
            "infercdn_gateway_worker_audit_z",
            "Its running Z over recent sampled audits (about N(0, 1) for an honest worker; below -5 convicts).",
            labels=["worker"],
        )
        for s in workers:
            wid = s.worker.id
            reputation = book.of(wid)
            for option in Standing:
                standing.add_metric([wid, option.value], 1.0 if reputation.standing is option else 0.0)
            checks.add_metric([wid], reputation.checks)
            flags.add_metric([wid], reputation.flags)
            if reputation.running_z is not None:
                z.add_metric([wid], reputation.running_z)
        yield from (standing, checks, flags, z)
