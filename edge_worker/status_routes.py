"""``/health`` and ``/v1/models``: the same for every runtime, read from its ``Backend``."""

from __future__ import annotations

from aiohttp import web

from edge_worker.runtimes.base import BACKEND, Backend
from routing.health_report import OK, STARTING, HealthReport
from routing.wire import offer_to_json

STARTED_AT = web.AppKey("started_at", int)


def health_report(backend: Backend | None, runtime: str) -> HealthReport:
    if backend is None:  # still loading its models
        return HealthReport(STARTING, runtime, (), 0, 0)
    load = backend.load()
    return HealthReport(
        status=OK if backend.serving else STARTING,
        runtime=backend.runtime,
        models=tuple(o.model for o in backend.offers()),
        in_flight=load.in_flight,
        queued=load.queued,
        kv_cache_usage=load.kv_cache_usage,
    )


def add_status_routes(app: web.Application, runtime: str) -> None:
    async def health(request: web.Request) -> web.Response:
        report = health_report(request.app.get(BACKEND), runtime)
        return web.json_response(report.to_json(), status=report.http_status)

    async def models(request: web.Request) -> web.Response:
        backend = request.app.get(BACKEND)
        offers = backend.offers() if backend is not None else ()
        data = [offer_to_json(o, request.app[STARTED_AT]) for o in offers]
        return web.json_response({"object": "list", "data": data})

    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", models)
