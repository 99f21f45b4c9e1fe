"""The gateway's OpenAI-compatible routes."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.accounting import Finished, account, outcome_label
from gateway.answers import completion_answer, embeddings_answer
from gateway.auditor import Auditor, Sample
from gateway.auth import API_KEY, Access
from gateway.canaries import CANARY, CANARY_KEY_ID, Canaries
from gateway.errors import request_id_of
from gateway.keys import ApiKey
from gateway.ledger.service import Ledger
from gateway.metrics import GatewayMetrics
from gateway.proxy import Outcome, Proxy, nothing_before_end
from gateway.registry import Registry
from gateway.static_workers import StaticWorkers
from gateway.usage_recorder import UsageRecorder
from gateway.warm_up import WarmUp
from routing.balancer import Balancer
from routing.budget import BudgetBook
from routing.capabilities import NOTHING, Capabilities, capabilities_to_json
from routing.embedding_requests import EmbeddingRequest, parse_embedding_request
from routing.errors import ModelNotFound, NoSuitableWorker, RequestTimeout, WarmingUp
from routing.fleet import Candidate, Fleet
from routing.http_errors import reported_status
from routing.openai_requests import (
    GenerationRequest,
    decode_json_object,
    parse_chat_request,
    parse_completion_request,
)
from routing.ratelimit import RateLimiter
from routing.receipt import KEYS_PATH
from routing.suitability import (
    Requirements,
    RoutedRequest,
    completion_allowance,
    estimate_prompt_tokens,
    forwarded_body,
    requirements_of,
)
from routing.wire import quantization_to_json

# What a budgeted key has left, sent with the answer (x-budget-remaining-tokens-day, …).
BUDGET_HEADERS = web.RequestKey("budget_headers", dict[str, str])
# A client's preferred region, as a header (or "region" in the body).
REGION_HEADER = "x-infercdn-region"
# Counted against a key's tokens-per-minute when a request sets no max_tokens.
UNBOUNDED_COMPLETION_TOKENS = 256


@dataclass(slots=True)
class GatewayState:
    """Everything a request handler needs, built once by ``create_app``."""

    balancer: Balancer
    proxy: Proxy
    static_workers: StaticWorkers
    registry: Registry | None  # None without a join token: registration is off
    access: Access
    limiter: RateLimiter
    budgets: BudgetBook
    metrics: GatewayMetrics
    started_at: int
    warm_up: WarmUp
    body_timeout_s: float
    auditor: Auditor | None = None  # None: no verifiers configured
    canaries: Canaries | None = None  # None: no auditor, or canary_share = 0
    ledger: Ledger | None = None  # None: ledger_url = "off"

    @property
    def fleet(self) -> Fleet:
        return self.balancer.fleet


STATE = web.AppKey("state", GatewayState)


def auth_required(app: web.Application) -> bool:
    return not app[STATE].access.open


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _route(request, parse_chat_request)


async def completions(request: web.Request) -> web.StreamResponse:
    return await _route(request, parse_completion_request)


async def embeddings(request: web.Request) -> web.StreamResponse:
    return await _route(request, parse_embedding_request)


async def _route(request: web.Request, parse: Callable[[dict[str, Any]], RoutedRequest]) -> web.StreamResponse:
    state = request.app[STATE]
    clock = asyncio.get_running_loop().time
    started = clock()
    outcome = Outcome()
    model, key, reserved, budgeted, completion_cap, prompt_tokens = "unknown", None, 0, 0, None, 0
    recorder = (
        None
        if state.ledger is None
        else UsageRecorder(state.ledger, state.metrics, request_id_of(request), outcome, started)
    )

    def finish(status: int) -> None:
        if recorder is not None:
            recorder.record(status)  # a no-op if the answer's end recorded it already
        done = Finished(
            path=request.path,
            request_id=request_id_of(request),
            model=model,
            status=status,
            outcome=outcome_label(status, outcome.attempts),
            started=started,
            ended=clock(),
            key_id=key.id if key is not None else "",
        )
        account(state.metrics, done, outcome)
        if outcome.worker and outcome.sent_at is not None and outcome.usage.completion_tokens:
            serving_s = done.ended - outcome.sent_at
            state.balancer.slos.of(outcome.worker).served(outcome.usage.completion_tokens, serving_s, done.ended)
        if key is not None and reserved:
            used = tokens_used(outcome, reserved, prompt_tokens)
            state.limiter.settle(key.id, key.limits, reserved, used, time.monotonic())
        if key is not None and budgeted:
            used = tokens_used(outcome, budgeted, prompt_tokens)
            state.budgets.settle(key.id, key.budget, budgeted, used, time.time())

    with reported_status(finish) as status:
        raw = await _read_body(request, state.body_timeout_s)
        body = decode_json_object(raw)
        routed = parse(body)
        requirements = requirements_of(body, routed, request.headers.get(REGION_HEADER, ""))
        model = state.fleet.model_id(requirements.model) or "unknown"  # a bounded metrics label
        key = request.get(API_KEY)
        canary = request.get(CANARY)  # this gateway's own canary, pinned to one worker
        if recorder is not None:
            recorder.model = model
            recorder.key_id = key.id if key is not None else CANARY_KEY_ID if canary is not None else ""
        if key is not None:
            prompt_tokens = estimate_prompt_tokens(routed)
            max_tokens = completion_allowance(routed)
            if max_tokens is None and isinstance(routed, GenerationRequest):
                # Unbounded, it may generate no more than the key may spend: what its budgets have left,
                # one minute's tokens; it reserves a usual answer's length (see routing/budget.py).
                completion_cap = completion_cap_of(state.budgets, key, prompt_tokens, time.time())
            unbounded = UNBOUNDED_COMPLETION_TOKENS if completion_cap is None else completion_cap
            completion_reserve = max(1, min(unbounded, UNBOUNDED_COMPLETION_TOKENS))
            tokens = prompt_tokens + (completion_reserve if max_tokens is None else max_tokens)
            if key.budget:
                request[BUDGET_HEADERS] = state.budgets.admit(key.id, key.budget, tokens, time.time())
                budgeted = tokens
            state.limiter.admit(key.id, key.limits, tokens, time.monotonic())
            reserved = tokens
        images = sum(m.images for m in routed.messages or ()) if isinstance(routed, GenerationRequest) else 0
        outcome.usage.bound(len(raw), most_completion_tokens(routed, completion_cap), images=images)
        plan = _plan(state, requirements)
        if canary is not None:
            plan = [c for c in plan if c.state.worker.id == canary]
            if not plan:
                raise NoSuitableWorker(f"The canary's worker {canary} cannot take it now.")
        generation = routed if isinstance(routed, GenerationRequest) else None
        outcome.trail.collect = state.auditor is not None and generation is not None
        response = await state.proxy.forward(
            request,
            plan,
            lambda candidate: forwarded_body(raw, body, requirements, candidate, completion_cap),
            stream=routed.stream,
            request_id=request_id_of(request),
            outcome=outcome,
            before_end=nothing_before_end if recorder is None else recorder.before_end,
            answer=completion_answer if isinstance(routed, GenerationRequest) else embeddings_answer(routed),
        )
        status.code = response.status
        audited = outcome.trail.collect and outcome.trail.ended and response.status == 200
        if state.auditor is not None and generation is not None and audited:
            forced = canary is not None  # a canary is always audited: that is what it is for
            _consider_audit(state, state.auditor, body, generation, request_id_of(request), outcome, forced=forced)
        if state.canaries is not None and canary is None and generation is not None:
            state.canaries.routed()
        return response


def _consider_audit(
    state: GatewayState,
    auditor: Auditor,
    body: dict[str, Any],
    request: GenerationRequest,
    request_id: str,
    outcome: Outcome,
    *,
    forced: bool = False,
) -> None:
    """A delivered answer, offered for an audit (drawn or not by the auditor, off the request path)."""
    worker = state.fleet.get(outcome.worker)
    model = state.fleet.model_id(request.model)
    offer = next((o for o in worker.offers if o.model == model), None) if worker is not None else None
    if offer is None:
        return  # the worker left meanwhile
    trail = outcome.trail
    sample = Sample(
        outcome.worker,
        offer,
        body,
        request,
        request_id,
        trail.sealed,
        trail.text,
        trail.calls,
        trail.finish_reason,
        outcome.usage,
    )
    auditor.consider(sample, forced=forced)


def completion_cap_of(budgets: BudgetBook, key: ApiKey, prompt_tokens: int, wall: float) -> int | None:
    """The most an answer without ``max_tokens`` may generate for ``key``; None where nothing caps it."""
    caps = []
    if key.budget:
        caps.append(budgets.remaining(key.id, key.budget, wall) - prompt_tokens)
    if key.limits.tokens_per_minute:
        caps.append(key.limits.tokens_per_minute - prompt_tokens)
    return min(caps) if caps else None


def most_completion_tokens(request: RoutedRequest, completion_cap: int | None) -> int | None:
    """The longest answer ``request`` may get, over all its choices: its max_tokens, or the one the gateway
    set (``completion_cap``); None: up to the worker's context."""
    allowance = completion_allowance(request)
    if isinstance(request, EmbeddingRequest):
        return allowance
    allowance = completion_cap if allowance is None else allowance
    return None if allowance is None else allowance * request.n


def tokens_used(outcome: Outcome, reserved: int, prompt_tokens: int) -> int:
    """What a request cost against its key: the worker's usage; nothing if no worker answered.

    A worker that answered but reported no usage: what the gateway relayed itself, never less than the
    reservation (so a stream without usage cannot run past the key's limits for free)."""
    usage = outcome.usage
    if usage.prompt_tokens or usage.completion_tokens:
        return usage.prompt_tokens + usage.completion_tokens
    if outcome.first_byte_at is None:
        return 0
    return max(reserved, prompt_tokens + outcome.trail.relayed_tokens)


async def _read_body(request: web.Request, timeout_s: float) -> bytes:
    if request.content.is_eof():
        return await request.read()  # it came with the headers (most do): nothing to wait for, no timer
    try:
        async with asyncio.timeout(timeout_s):
            return await request.read()
    except TimeoutError:
        raise RequestTimeout(f"The request body did not arrive within {timeout_s:g} s.") from None


def _plan(state: GatewayState, requirements: Requirements) -> list[Candidate]:
    model = requirements.model
    now = asyncio.get_running_loop().time()
    try:
        return state.balancer.plan(requirements, now)
    except ModelNotFound:
        if state.warm_up.warming(now):
            raise WarmingUp(
                f"The gateway has just started and '{model}' is not back yet; retry shortly.", retry_after_s=1
            ) from None
        unreached = len(state.static_workers.unreached)
        if unreached:
            # Unreached workers may serve it: "not found" would be a guess.
            raise NoSuitableWorker(
                f"The model '{model}' is not known yet: {unreached} configured worker(s) have not answered."
            ) from None
        raise


async def list_models(request: web.Request) -> web.Response:
    state = request.app[STATE]
    data = []
    for model, candidates in sorted(state.fleet.models().items()):
        quantizations = {c.offer.quantization.label: c.offer.quantization for c in candidates}
        capabilities = functools.reduce(Capabilities.union, (c.offer.capabilities for c in candidates), NOTHING)
        data.append(
            {
                "id": model,
                "object": "model",
                "created": state.started_at,
                "owned_by": "infercdn",
                "quantizations": [quantization_to_json(q) for _, q in sorted(quantizations.items())],
                "context_length": max(c.offer.context_length for c in candidates),
                "workers": sum(1 for c in candidates if c.state.health.serving),
                "capabilities": capabilities_to_json(capabilities),
            }
        )
    return web.json_response({"object": "list", "data": data})


async def health(request: web.Request) -> web.Response:
    workers = request.app[STATE].fleet.workers()
    healthy = sum(1 for w in workers if w.health.serving)
    return web.json_response({"status": "ok", "workers": len(workers), "healthy_workers": healthy})


async def public_keys(request: web.Request) -> web.Response:
    """The gateway's public key: what its usage receipts and worker tokens are checked against, offline."""
    registry = request.app[STATE].registry
    keys = [] if registry is None else [{"public_key": registry.minter.public_text, "use": ["receipts", "tokens"]}]
    return web.json_response({"object": "list", "keys": keys})


async def _budget_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    told = request.get(BUDGET_HEADERS)
    if told:
        response.headers.update(told)


def add_routes(app: web.Application) -> None:
    app.on_response_prepare.append(_budget_headers)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/health", health)
    app.router.add_get(KEYS_PATH, public_keys)
