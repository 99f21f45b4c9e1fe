"""Builds the worker's aiohttp app from its config: ``create_app(config)``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from edge_worker.access import gateway_only
from edge_worker.announcer import Announcer
from edge_worker.audit_records import RECORDS, RecordSealer
from edge_worker.config import WorkerConfig
from edge_worker.errors import openai_errors
from edge_worker.hardware import detect
from edge_worker.metrics import WorkerMetrics
from edge_worker.receipt_book import ReceiptBook, book_path
from edge_worker.receipt_fetcher import ReceiptFetcher
from edge_worker.runtimes.base import BACKEND, Backend
from edge_worker.status_routes import STARTED_AT, add_status_routes
from edge_worker.tunnel_pool import TunnelPool
from routing.access_tokens import TokenChecker
from routing.announce import Heartbeat, Registration
from routing.consul_client import PassingServices, consul_client
from routing.consul_service import ConsulService
from routing.consul_wire import LIFETIME_S, registration_to_meta
from routing.fleet import DIRECT, TUNNEL
from routing.gateway_presence import SERVICE as GATEWAY_SERVICE
from routing.gateway_presence import FoundGateway, found_gateway
from routing.identity import Identity, load_or_create
from routing.in_process import InProcessApi
from routing.key_handover import load_handover
from routing.signing import Signer
from routing.supervise import start_supervised, stop_all

log = logging.getLogger(__name__)


class Leaving(Protocol):
    """An announcer: started once the models are loaded, told to deregister on the way out."""

    def start(self) -> None: ...

    async def deregister(self) -> None: ...


ANNOUNCERS = web.AppKey("announcers", list[Leaving])


async def leave(app: web.Application) -> None:
    """Deregister everywhere, once: gateways stop sending new requests before the drain."""
    registered: list[Leaving] = app[ANNOUNCERS]
    announcers = registered.copy()
    registered.clear()
    await asyncio.gather(*(a.deregister() for a in announcers))


async def registration_of(config: WorkerConfig, worker_id: str, backend: Backend) -> Registration:
    return Registration(
        worker_id=worker_id,
        url=config.advertised(),
        region=config.region,
        runtime=backend.runtime,
        hardware=await detect(),
        capacity=config.capacity or backend.capacity,
        offers=backend.offers(),
        via=TUNNEL if config.tunnel else DIRECT,
    )


def heartbeat_of(worker_id: str, backend: Backend, metrics: WorkerMetrics) -> Heartbeat:
    load = backend.load()
    speeds = list(metrics.last_tokens_per_second.values())
    return Heartbeat(
        worker_id=worker_id,
        in_flight=load.in_flight,
        queued=load.queued,
        tokens_per_second=sum(speeds) / len(speeds) if speeds else 0.0,
        kv_cache_usage=load.kv_cache_usage,
    )


def create_app(config: WorkerConfig) -> web.Application:
    # Read (or made) once, before the app serves anything: a worker that registers speaks with its own key.
    key_path = config.key_path(os.environ)
    identity = load_or_create(key_path) if config.announces else None
    # After "infercdn worker rotate-key": the old key's handover to this one, sent with registrations.
    handover = load_handover(key_path, identity) if identity is not None else None
    worker_id = config.id_for(identity, handover)
    trusted = config.trusted_gateway_keys()
    tokens = TokenChecker(worker_id, time.time, trusted)
    middlewares: list[Middleware] = [openai_errors]
    if config.announces or config.access_token or config.gateway_keys:
        middlewares.append(
            gateway_only(tokens, config.access_token, open_health_and_metrics=config.open_health_and_metrics)
        )
    else:
        log.warning("no gateways, Consul or access token: anyone who can reach this port can use this worker")
    app = web.Application(client_max_size=config.max_body_bytes, middlewares=middlewares)
    metrics = WorkerMetrics()
    app[STARTED_AT] = int(time.time())
    app[RECORDS] = RecordSealer(worker_id, identity)
    app[ANNOUNCERS] = []

    async def metrics_handler(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def announce_ctx(app: web.Application) -> AsyncIterator[None]:
        if not (config.gateways or config.consul_url):
            yield
            return
        async with contextlib.AsyncExitStack() as stack:
            # Announce only once the backend can serve (vLLM takes minutes to load).
            assert identity is not None  # made above for every worker that announces
            me = Me(worker_id, identity, tokens, handover.text if handover else "")
            starting = asyncio.create_task(_announce_when_ready(app, config, me, metrics, stack))
            yield
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            await leave(app)  # a no-op when serve() did it already

    if config.runtime == "vllm":
        from edge_worker.runtimes import vllm

        vllm.install(app, config, metrics)
    else:
        # Imported here so a vLLM-only host (the CUDA image) needs no llama-cpp-python.
        from edge_worker.runtimes import llama_cpp

        llama_cpp.install(app, config, metrics)
    add_status_routes(app, config.runtime)
    app.cleanup_ctx.append(announce_ctx)
    app.router.add_get("/metrics", metrics_handler)
    return app


@dataclass(frozen=True, slots=True)
class Me:
    """Who this worker is to gateways: its id, its key, and the gateway tokens it accepts."""

    worker_id: str
    identity: Identity
    tokens: TokenChecker
    handover: str  # the previous key's handover to this one ("" if never rotated)


async def receipt_book(config: WorkerConfig, me: Me, stack: contextlib.AsyncExitStack) -> ReceiptBook:
    """What each gateway says this worker served, checked and kept (``infercdn worker receipts``)."""
    book = await ReceiptBook.open(book_path(config.key_path(os.environ)), me.worker_id)
    stack.push_async_callback(book.close)
    return book


async def _announce_when_ready(
    app: web.Application, config: WorkerConfig, me: Me, metrics: WorkerMetrics, stack: contextlib.AsyncExitStack
) -> None:
    backend = app[BACKEND]
    await backend.ready.wait()
    registration = await registration_of(config, me.worker_id, backend)
    log.info("this worker is %s (key %s)", me.worker_id, me.identity.fingerprint)
    announcers: list[Leaving] = []
    book = await receipt_book(config, me, stack)
    signer = Signer(me.identity, me.worker_id, config.join_token, handover=me.handover)
    tunnels = TunnelPool(me.worker_id, signer, InProcessApi(app))
    stack.push_async_callback(tunnels.close)  # after the drain: requests in flight come over them
    session = await stack.enter_async_context(aiohttp.ClientSession())
    if config.gateways:
        load = partial(heartbeat_of, me.worker_id, backend, metrics)
        for gateway in config.gateways if config.tunnel else ():
            tunnels.open(gateway)
        # A gateway that cannot dial us gets a tunnel.
        when_unreachable = tunnels.open if config.auto_tunnel and not config.tunnel else None
        announcers.append(
            Announcer(
                config.gateways,
                signer,
                session,
                registration,
                load,
                trust=me.tokens.trust,
                on_registered=tunnels.registered,
                tunnel_when_unreachable=when_unreachable,
                receipts=book,
            )
        )
    if config.consul_url:
        client = consul_client(config.consul_url)
        stack.push_async_callback(client.close)
        interval = config.consul_heartbeat_s
        signed_meta = partial(registration_to_meta, registration, me.identity, config.join_token, handover=me.handover)
        consul = ConsulService(
            client,
            config.consul_service,
            registration.worker_id,
            registration.url,
            signed_meta,
            lifetime_s=LIFETIME_S,
            interval_s=interval,
        )
        announcers.append(consul)
        # Its gateways are in Consul too: a tunnelled worker dials them, and each is asked for receipts
        # every five Consul heartbeats (10 s by default).
        fetcher = ReceiptFetcher(me.worker_id, signer, session, book, interval_s=5 * interval)
        dial = config.tunnel and not config.gateways

        async def found(gateways: list[FoundGateway]) -> None:
            for gateway in gateways:  # at every answer: both are no-ops for a gateway seen before
                if dial:
                    tunnels.open(gateway.url, registered=True)
                fetcher.add(gateway)

        trusted = partial(found_gateway, trusted=config.trusted_gateway_keys())
        meanwhile = "tunnels stay open to the gateways found so far"
        watch = PassingServices(client, GATEWAY_SERVICE, trusted, found, meanwhile=meanwhile)
        tasks = [start_supervised("finding gateways in Consul", watch.run), start_supervised("receipts", fetcher.run)]
        stack.push_async_callback(stop_all, tasks)
    app[ANNOUNCERS].extend(announcers)
    for announcer in announcers:
        announcer.start()
