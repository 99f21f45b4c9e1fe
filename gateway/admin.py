"""Admin endpoints (admin key): the live fleet and worker enrollments, for ``infercdn fleet`` and ops."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass

from aiohttp import web

from gateway import usage_report
from gateway.api import STATE
from gateway.enrollment_store import Enrollment, EnrollmentState
from gateway.registry import Registry
from routing.announce import check_worker_id
from routing.errors import Forbidden, NotFound
from routing.fleet import TUNNEL, Worker, WorkerState
from routing.health import Status
from routing.identity import fingerprint, to_text
from routing.reputation import Reputations, Standing
from routing.slo import WINDOWS

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FleetRow:
    id: str
    url: str
    region: str
    runtime: str
    hardware: str
    source: str
    via: str  # direct, tunnel, or "tunnel (closed)" while the worker has none open to this gateway
    models: list[str]  # model@QUANT
    health: str  # healthy, probation, ejected, unreachable
    rtt_ms: float | None
    in_flight: int  # this gateway's requests on it
    reported_in_flight: int
    queued: int
    tokens_per_second: float | None
    last_heartbeat_s: float | None  # seconds ago; None for workers that do not heartbeat
    ejections: int
    trust: str  # its standing from audits (probation, trusted, suspect, convicted); "-" with audits off
    slo_weight: float  # 1 while it meets its SLOs; less as it burns its error budget
    slo: dict[str, dict[str, object]]  # per window (1h, 24h, 30d): availability, success, TTFT, tokens/s
    below_slo_floor: list[str]  # models whose SLO floor (model_slos) it misses: tried after those meeting it


def health_of(state: WorkerState, now: float) -> str:
    status = state.health.status
    return "busy" if status is Status.HEALTHY and state.health.busy_until > now else status.value


def trust_of(book: Reputations, state: WorkerState) -> str:
    known = book.get(state.worker.id)
    if known is not None and known.standing is Standing.CONVICTED:
        return known.standing.value
    if not book.enabled or not any(o.sha256 for o in state.offers):
        return "-"  # nothing to audit it against
    return book.of(state.worker.id).standing.value


def via_of(worker: Worker, registry: Registry | None) -> str:
    if worker.via != TUNNEL or (registry is not None and worker.id in registry.tunnels):
        return worker.via
    return "tunnel (closed)"


async def fleet(request: web.Request) -> web.Response:
    state = request.app[STATE]
    now = asyncio.get_running_loop().time()
    rows = []
    for s in sorted(state.fleet.workers(), key=lambda w: w.worker.id):
        w, w_id = s.worker, s.worker.id
        rows.append(
            FleetRow(
                id=w.id,
                url=w.url,
                region=w.region,
                runtime=w.runtime or ", ".join(sorted({o.runtime for o in s.offers})),
                hardware=w.hardware,
                source=w.source,
                via=via_of(w, state.registry),
                models=[str(o) for o in s.offers],
                health=health_of(s, now),
                rtt_ms=round(s.rtt_s.value * 1000, 2) if s.rtt_s.measured else None,
                in_flight=s.in_flight,
                reported_in_flight=s.load.in_flight,
                queued=s.load.queued,
                tokens_per_second=s.load.tokens_per_second,
                last_heartbeat_s=state.registry.last_heartbeat_age_s(w.id) if state.registry else None,
                ejections=s.health.total_ejections,
                trust=trust_of(state.balancer.reputations, s),
                slo_weight=round(s.slo_weight, 4),
                slo={w.name: state.balancer.slos.of(w_id).report(w.name, now).to_json() for w in WINDOWS},
                below_slo_floor=state.balancer.models_below_floor(s),
            )
        )
    return web.json_response({"workers": [asdict(r) for r in rows], "panics": state.balancer.panics})


@dataclass(frozen=True, slots=True)
class EnrollmentRow:
    worker_id: str
    key: str  # the public key, base64url
    fingerprint: str
    state: str  # approved, pending, revoked
    enrolled_at: float
    source: str  # the address it enrolled from

    @classmethod
    def of(cls, row: Enrollment) -> EnrollmentRow:
        return cls(
            row.worker_id,
            to_text(row.public_key),
            fingerprint(row.public_key),
            row.state.value,
            row.enrolled_at,
            row.source,
        )


def _registry(request: web.Request) -> Registry:
    registry = request.app[STATE].registry
    if registry is None:
        raise Forbidden("Registration is off: this gateway has no join token, so no worker is enrolled.")
    return registry


async def enrollments(request: web.Request) -> web.Response:
    registry = _registry(request)
    rows = [asdict(EnrollmentRow.of(row)) for row in registry.enrollments.listed()]
    return web.json_response({"gateway_key": registry.minter.public_text, "enrollments": rows})


async def approve(request: web.Request) -> web.Response:
    row = await _registry(request).enrollments.set_state(_worker_id(request), EnrollmentState.APPROVED)
    log.info("worker %s approved by an operator", row.worker_id)
    return web.json_response(asdict(EnrollmentRow.of(row)))


async def revoke(request: web.Request) -> web.Response:
    registry = _registry(request)
    row = await registry.enrollments.set_state(_worker_id(request), EnrollmentState.REVOKED)
    registry.drop(row.worker_id)
    log.warning("worker %s (key %s) revoked by an operator", row.worker_id, fingerprint(row.public_key))
    return web.json_response(asdict(EnrollmentRow.of(row)))


async def forget(request: web.Request) -> web.Response:
    registry = _registry(request)
    worker_id = _worker_id(request)
    await registry.enrollments.forget(worker_id)
    registry.drop(worker_id)
    log.info("worker %s forgotten by an operator: its id may enroll again", worker_id)
    return web.Response(status=204)


async def audits(request: web.Request) -> web.Response:
    """Every audited worker's standing and record, with the evidence of its flagged audits."""
    state = request.app[STATE]
    auditor = state.auditor
    rows = []
    for worker_id, reputation in state.balancer.reputations.items():
        evidence = auditor.evidence.get(worker_id, ()) if auditor is not None else ()
        rows.append(
            {
                "worker_id": worker_id,
                "standing": reputation.standing.value,
                "since": reputation.since,
                "checks": reputation.checks,
                "flags": reputation.flags,
                "running_z": reputation.running_z,
                "recent_greedy_checks": reputation.recent_greedy,
                "last_reason": reputation.last_reason,
                "evidence": [e.to_json() for e in evidence],
            }
        )
    return web.json_response({"enabled": auditor is not None, "workers": rows})


async def audit_gaps(request: web.Request) -> web.Response:
    """The largest gaps of greedy audits, per model and worker, and the threshold they suggest."""
    state = request.app[STATE]
    auditor = state.auditor
    if auditor is None:
        return web.json_response({"enabled": False, "models": []})
    suggested = auditor.gaps.suggested()
    spreads = auditor.gaps.spreads()
    models = [
        {
            "model": model,
            "suggested_gap_nats": threshold,
            "workers": [asdict(s) for s in spreads if s.model == model],
        }
        for model, threshold in suggested.items()
    ]
    return web.json_response({"enabled": True, "audit_gap_nats": auditor.gap_nats, "models": models})


async def pardon(request: web.Request) -> web.Response:
    auditor = request.app[STATE].auditor
    worker_id = _worker_id(request)
    if auditor is None:
        raise Forbidden("Audits are off on this gateway: nobody is convicted.")
    if not await auditor.pardon(worker_id):
        raise NotFound(f"Worker '{worker_id}' is not convicted.")
    log.warning("worker %s pardoned by an operator: it starts over on probation", worker_id)
    return web.Response(status=204)


def _worker_id(request: web.Request) -> str:
    return check_worker_id(request.match_info["worker_id"])


def add_routes(app: web.Application) -> None:
    app.router.add_get("/admin/v1/fleet", fleet)
    app.router.add_get("/admin/v1/enrollments", enrollments)
    app.router.add_get("/admin/v1/audits/gaps", audit_gaps)
    app.router.add_post("/admin/v1/enrollments/{worker_id}/approve", approve)
    app.router.add_post("/admin/v1/enrollments/{worker_id}/revoke", revoke)
    app.router.add_delete("/admin/v1/enrollments/{worker_id}", forget)
    app.router.add_get("/admin/v1/audits", audits)
    app.router.add_post("/admin/v1/workers/{worker_id}/pardon", pardon)
    app.router.add_get("/admin/v1/usage", usage_report.usage)
