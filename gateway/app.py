"""Builds the gateway's aiohttp app from its config: ``create_app(config)``."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway import admin, api
from gateway.auditor import Auditor
from gateway.auth import Access, authenticate
from gateway.budgets import keep_in_step, observe_ledger
from gateway.canaries import Canaries
from gateway.config import GatewayConfig
from gateway.consul_watch import ConsulWatch
from gateway.conviction_store import ConvictionStore
from gateway.enrollment_store import EnrollmentStore
from gateway.enrollments import Enrollments
from gateway.errors import openai_errors
from gateway.keys import KeyStore, single_key
from gateway.ledger.service import Ledger, Retention
from gateway.metrics import GatewayMetrics
from gateway.prober import Prober
from gateway.proxy import Proxy, ProxyLimits
from gateway.receipt_desk import ReceiptDesk
from gateway.registry import Registry, RegistryLimits
from gateway.shared_decisions import SharedDecisions
from gateway.static_workers import StaticWorkers
from gateway.tunnels import TunnelHub
from gateway.upstream import Upstreams
from gateway.verifiers import Verifiers
from gateway.warm_up import WarmUp
from routing.access_tokens import TokenMinter
from routing.advertise import AddressPolicy
from routing.announce import REGISTER_PATH
from routing.balancer import Balancer
from routing.budget import Budget, BudgetBook
from routing.canaries import CanaryPlan
from routing.consul_client import PassingServices, consul_client
from routing.consul_service import ConsulService
from routing.enrollment_decision import decision_key
from routing.errors import Forbidden
from routing.fleet import Fleet
from routing.gateway_presence import LIFETIME_S as PRESENCE_LIFETIME_S
from routing.gateway_presence import SERVICE as GATEWAY_SERVICE
from routing.gateway_presence import presence_meta
from routing.gateway_presence import service_id as gateway_service_id
from routing.policies import policy_named
from routing.ratelimit import Limits, RateLimiter
from routing.reputation import Reputations
from routing.signing import Verifier
from routing.supervise import start_supervised, stop_all
from routing.upstreams import parse_upstream
from routing.verifier_presence import SERVICE as VERIFIER_SERVICE
from routing.verifier_presence import verifier_url

log = logging.getLogger(__name__)

# After a restart, a registered worker rejoins on its next heartbeat: this much slack for it to get through.
WORKER_REJOIN_S = 2.0
# How far back the ledger is replayed into the SLO windows at start (the 30-day window starts over).
SLO_RESTORE_S = 86400.0


def _metrics_handler(metrics: GatewayMetrics) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        metrics.forget_departed()
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return handler


def keys_of(config: GatewayConfig) -> KeyStore:
    limits = Limits(config.api_key_requests_per_minute, config.api_key_tokens_per_minute)
    budget = Budget(config.api_key_tokens_per_day, config.api_key_tokens_per_month)
    single = single_key(config.api_key, limits, budget) if config.api_key else None
    return KeyStore.load(Path(config.api_keys_file).expanduser() if config.api_keys_file else None, single=single)


def create_app(
    config: GatewayConfig, *, rng: random.Random | None = None, clock: Callable[[], float] | None = None
) -> web.Application:
    """The gateway; ``rng`` and ``clock`` (the registry's: heartbeat ages and TTLs) may be passed in by tests."""
    chance = rng or random.Random()
    balancer = Balancer(
        Fleet(),
        chance,
        policy_named(config.routing_policy),
        config.health_policy(),
        max_attempts=config.max_attempts,
        reputations=Reputations(config.trust_policy(), enabled=config.audits_enabled),
        floors=config.slo_floors(),
    )
    metrics = GatewayMetrics(balancer, label_values=config.metric_label_values)
    access = Access(keys_of(config), config.admin_key, config.loopback)
    middlewares = [openai_errors, authenticate(access, metrics)]
    app = web.Application(client_max_size=config.max_body_bytes, middlewares=middlewares)

    async def state_ctx(app: web.Application) -> AsyncIterator[None]:
        # One pooled session for every upstream call, for the app's lifetime.
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=60, ttl_dns_cache=300)
        session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        static_workers = StaticWorkers(
            config.workers, balancer, session, timeout_s=config.connect_timeout_s, env=os.environ
        )
        tunnels = TunnelHub(ping_interval_s=config.probe_interval_s, on_rtt=balancer.tunnel_rtt)
        upstreams = Upstreams(session, tunnels)
        registry = await registry_of(config, balancer, tunnels, clock, upstreams) if config.join_token else None
        limits = ProxyLimits(
            connect_s=config.connect_timeout_s,
            first_byte_s=config.first_byte_timeout_s,
            request_s=config.request_timeout_s,
            deadline_s=config.deadline_s,
            max_stream_s=config.max_stream_s,
            max_stream_bytes=config.max_stream_bytes,
            max_response_bytes=config.max_response_bytes,
            max_embeddings_bytes=config.max_embeddings_bytes,
        )
        warm_up = WarmUp()
        if config.join_token:
            # A registered worker hears of the restart from its next heartbeat and registers at once.
            warm_up.until = asyncio.get_running_loop().time() + config.heartbeat_interval_s + WORKER_REJOIN_S
        ledger = await ledger_of(config, metrics, registry)
        if ledger is not None:
            await restore_slos(balancer, ledger)
        if ledger is not None and registry is not None:
            registry.receipts = ReceiptDesk(ledger.store, registry.minter.public_text, registry.minter.sign)
        consul = consul_client(config.consul_url) if config.consul_url else None
        if consul is not None:
            warm_up.waiting_for.add("consul")
        app[api.STATE] = api.GatewayState(
            balancer=balancer,
            proxy=Proxy(upstreams, limits, balancer, metrics, ask_records=config.audits_enabled),
            static_workers=static_workers,
            registry=registry,
            access=access,
            limiter=RateLimiter(),
            budgets=BudgetBook(),
            metrics=metrics,
            started_at=int(time.time()),
            warm_up=warm_up,
            body_timeout_s=config.body_timeout_s,
            ledger=ledger,
        )
        auditor = (
            await auditor_of(config, balancer, session, metrics, chance, registry) if config.audits_enabled else None
        )
        app[api.STATE].auditor = auditor
        prober = Prober(
            balancer, upstreams, interval_s=config.probe_interval_s, timeout_s=config.connect_timeout_s, rng=chance
        )
        static_workers.add_upstreams(tuple(parse_upstream(spec, os.environ) for spec in config.upstreams))
        await static_workers.refresh()  # know the fleet before the first request
        presence: ConsulService | None = None  # this gateway in Consul, for tunnelled Consul workers
        tasks = [
            start_supervised("static worker refresh", lambda: static_workers.run(config.refresh_interval_s)),
            start_supervised("prober", prober.run),
        ]
        if registry is not None:
            tasks.append(start_supervised("registry expiry", registry.run))
        if ledger is not None:
            tasks.append(start_supervised("ledger writer", ledger.writer.run))
            tasks.append(start_supervised("ledger retention", ledger.prune_forever))
        budgeted = access.keys.budgeted()
        if budgeted and ledger is not None:
            book, store = app[api.STATE].budgets, ledger.store
            await observe_ledger(book, budgeted, store, time.time())  # what was spent before this start
            tasks.append(start_supervised("budgets", lambda: keep_in_step(book, budgeted, store)))
        elif budgeted:
            log.warning("token budgets are kept in memory only (the ledger is off): a restart forgets the spending")
        if auditor is not None:
            tasks.append(start_supervised("auditor", auditor.run))
            tasks.append(start_supervised("verifier refresh", auditor.verifiers.run))
            if config.canary_share > 0:
                verifiers = auditor.verifiers
                canaries = Canaries(
                    app,
                    balancer,
                    metrics,
                    CanaryPlan(config.canary_share),
                    chance,
                    checkable=lambda sha256: verifiers.url_for(sha256) is not None,
                )
                app[api.STATE].canaries = canaries
                tasks.append(start_supervised("canaries", canaries.run))
        if consul is not None and registry is not None:  # the config check: Consul needs the join token
            watch = ConsulWatch(
                balancer,
                consul,
                config.consul_service,
                config.join_token,
                registry.enrollments,
                bearer_for=registry.minter.token_for,
                policy=registry.policy,
                answered=lambda: warm_up.answered("consul"),
            )
            tasks.append(start_supervised("Consul watch", watch.run))
            if config.admin_key:  # the fleet's gateways share it; decisions are MACed with it
                shared = SharedDecisions(
                    consul, registry.enrollments, decision_key(config.admin_key), drop=registry.drop
                )
                tasks.append(start_supervised("Consul enrollment decisions", shared.run))
            else:
                log.warning("no admin_key: approve/revoke/forget here are not shared with other gateways on Consul")
            if auditor is not None and config.verifier_key:  # verifiers found in Consul, proven by the key
                proven = partial(verifier_url, verifier_key=config.verifier_key, now=None)
                found = PassingServices(
                    consul,
                    VERIFIER_SERVICE,
                    proven,
                    auditor.verifiers.found_in_consul,
                    meanwhile="audits go to the verifiers found so far",
                )
                tasks.append(start_supervised("finding verifiers in Consul", found.run))
            if config.public_url:  # tunnelled Consul workers find this gateway there, and dial it
                identity = registry.enrollments.store.identity
                presence = ConsulService(
                    consul,
                    GATEWAY_SERVICE,
                    gateway_service_id(identity),
                    config.public_url,
                    partial(presence_meta, config.public_url, identity),
                    lifetime_s=PRESENCE_LIFETIME_S,
                    interval_s=config.heartbeat_interval_s,
                )
                presence.start()
        yield
        if presence is not None:
            await presence.deregister()
        tunnels.close_all()
        await stop_all(tasks)
        if ledger is not None:
            await ledger.close()  # what is queued goes in first
        if registry is not None:
            await registry.enrollments.store.close()
        if auditor is not None:
            await auditor.store.close()
        if consul is not None:
            await consul.close()
        await session.close()

    app.cleanup_ctx.append(state_ctx)
    api.add_routes(app)
    app.router.add_get("/metrics", _metrics_handler(metrics))
    admin.add_routes(app)
    app.router.add_post(REGISTER_PATH, _registry_route(Registry.register))
    app.router.add_post(REGISTER_PATH + "/{worker_id}/heartbeat", _registry_route(Registry.heartbeat))
    app.router.add_delete(REGISTER_PATH + "/{worker_id}", _registry_route(Registry.deregister))
    app.router.add_get(REGISTER_PATH + "/{worker_id}/tunnel", _registry_route(Registry.tunnel))
    app.router.add_post(REGISTER_PATH + "/{worker_id}/receipts", _registry_route(Registry.owed_receipts))
    return app


async def registry_of(
    config: GatewayConfig,
    balancer: Balancer,
    tunnels: TunnelHub,
    clock: Callable[[], float] | None,
    upstreams: Upstreams,
) -> Registry:
    store = await EnrollmentStore.open(config.state_path(os.environ))
    log.info("gateway key %s (workers found through Consul list it in gateway_keys)", store.identity.public_text)
    enrollments = Enrollments(
        store, manual=config.enrollment == "manual", enrollments_per_minute=config.enrollments_per_minute
    )
    return Registry(
        balancer,
        Verifier(config.join_token),
        enrollments,
        TokenMinter(store.identity, time.time),
        AddressPolicy.of(allow_loopback=config.loopback, networks=config.worker_networks),
        RegistryLimits(config.worker_ttl_s, config.heartbeat_interval_s, config.max_workers_per_address),
        tunnels,
        clock=clock,
        forget_address=upstreams.forget_address,
    )


async def ledger_of(config: GatewayConfig, metrics: GatewayMetrics, registry: Registry | None) -> Ledger | None:
    target = config.ledger_target(os.environ)
    if not target:
        return None
    retention = Retention(config.ledger_raw_days, config.ledger_rollup_days)
    # Rows are tagged with the gateway's key: its receipts are the rows it recorded.
    gateway = registry.minter.public_text if registry is not None else ""
    return await Ledger.open(target, gateway, metrics, retention, config.ledger_wait_s)


async def restore_slos(balancer: Balancer, ledger: Ledger) -> None:
    """The attempts of the last day, replayed from the ledger so SLOs survive a restart (probes start over)."""
    wall, loop_now = time.time(), asyncio.get_running_loop().time()
    outcomes = await ledger.store.outcomes_since(wall - SLO_RESTORE_S)
    for o in outcomes:
        at = loop_now - (wall - o.at)  # the loop clock's reading at that time
        balancer.slos.of(o.worker_id).attempt(o.status < 500, o.ttft_s, at)
    balancer.weigh_slos(loop_now)
    if outcomes:
        log.info("SLOs restored from %d requests in the ledger", len(outcomes))


async def auditor_of(
    config: GatewayConfig,
    balancer: Balancer,
    session: aiohttp.ClientSession,
    metrics: GatewayMetrics,
    rng: random.Random,
    registry: Registry | None,
) -> Auditor:
    """Audits of real traffic: convictions read back before the first request, verifiers asked what they hold."""
    store = await ConvictionStore.open(config.state_path(os.environ))
    verifiers = Verifiers(session, config.verifiers, config.verifier_key)
    await verifiers.refresh()

    def key_of(worker_id: str) -> bytes | None:
        row = registry.enrollments.store.rows.get(worker_id) if registry is not None else None
        return row.public_key if row is not None else None

    auditor = Auditor(
        balancer,
        verifiers,
        metrics,
        rng,
        gap_nats=config.audit_gap_nats,
        queue_size=config.audit_queue,
        key_of=key_of,
        store=store,
    )
    auditor.restore()
    return auditor


def _registry_route(
    method: Callable[[Registry, web.Request], Awaitable[web.StreamResponse]],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        registry = request.app[api.STATE].registry
        if registry is None:
            raise Forbidden("Registration is disabled: this gateway has no join token configured.")
        return await method(registry, request)

    return handler
