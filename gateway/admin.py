"""Admin endpoints (admin key): the live fleet as JSON, for ``infercdn fleet`` and ops."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass

from aiohttp import web

from gateway.api import STATE
from routing.fleet import WorkerState
from routing.health import Status


@dataclass(frozen=True, slots=True)
class FleetRow:
    id: str
    url: str
    region: str
    runtime: str
    hardware: str
    source: str
    models: list[str]  # model@QUANT
    health: str  # healthy, probation, ejected, unreachable
    rtt_ms: float | None
    in_flight: int  # this gateway's requests on it
    reported_in_flight: int
    queued: int
    tokens_per_second: float | None
    last_heartbeat_s: float | None  # seconds ago; None for workers that do not heartbeat
    ejections: int


def health_of(state: WorkerState, now: float) -> str:
    status = state.health.status
    return "busy" if status is Status.HEALTHY and state.health.busy_until > now else status.value


async def fleet(request: web.Request) -> web.Response:
    state = request.app[STATE]
    now = asyncio.get_running_loop().time()
    rows = []
    for s in sorted(state.fleet.workers(), key=lambda w: w.worker.id):
        w = s.worker
        rows.append(
            FleetRow(
                id=w.id,
                url=w.url,
                region=w.region,
                runtime=w.runtime or ", ".join(sorted({o.runtime for o in s.offers})),
                hardware=w.hardware,
                source=w.source,
                models=[str(o) for o in s.offers],
                health=health_of(s, now),
                rtt_ms=round(s.rtt_s.value * 1000, 2) if s.rtt_s.measured else None,
                in_flight=s.in_flight,
                reported_in_flight=s.load.in_flight,
                queued=s.load.queued,
                tokens_per_second=s.load.tokens_per_second,
                last_heartbeat_s=state.registry.last_heartbeat_age_s(w.id),
                ejections=s.health.total_ejections,
            )
        )
    return web.json_response({"workers": [asdict(r) for r in rows], "panics": state.balancer.panics})
