"""After each routed request: its metrics and its one log line (text, or JSON with --log-format json)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from gateway.metrics import GatewayMetrics
from gateway.proxy import Outcome
from routing.wire import CLIENT_CLOSED

log = logging.getLogger("gateway.requests")


@dataclass(frozen=True, slots=True)
class Finished:
    path: str
    request_id: str
    model: str  # as the fleet knows it, or "unknown": a bounded label
    status: int
    outcome: str  # served, failed_over, failed, rejected, client_closed
    started: float  # loop clock
    ended: float
    key_id: str = ""  # the client's API key id; "" on an open gateway


def outcome_label(status: int, attempts: int) -> str:
    if status == CLIENT_CLOSED:
        return "client_closed"
    if status < 400:
        return "failed_over" if attempts > 1 else "served"
    return "failed" if status >= 500 or attempts else "rejected"


def account(metrics: GatewayMetrics, done: Finished, outcome: Outcome) -> None:
    metrics.count_request(done.model, done.status, done.outcome)
    series = metrics.for_model(done.model)
    series.duration.observe(done.ended - done.started)
    ttft = None if outcome.first_byte_at is None else outcome.first_byte_at - done.started
    if ttft is not None:
        series.ttft.observe(ttft)
    if outcome.sent_at is not None:
        metrics.overhead.observe(outcome.sent_at - done.started)
    usage = outcome.usage
    if usage.overclaimed:  # billing for work it did not do, or locking the client out: worth an operator's look
        metrics.usage_overclaims.inc()
        log.warning(
            "worker %s claimed more tokens than request %s could use; counted %d + %d (the most it could)",
            outcome.worker or "?",
            done.request_id,
            usage.prompt_tokens,
            usage.completion_tokens,
        )
    if usage.prompt_tokens or usage.completion_tokens:
        series.prompt_tokens.inc(usage.prompt_tokens)
        series.completion_tokens.inc(usage.completion_tokens)
        if outcome.worker:
            metrics.count_usage(outcome.worker, done.key_id, usage.prompt_tokens, usage.completion_tokens)
    if not log.isEnabledFor(logging.INFO):
        return  # the line is built only when someone reads it
    fields = {
        "request_id": done.request_id,
        "path": done.path,
        "model": done.model,
        "worker": outcome.worker or None,
        "attempts": outcome.attempts,
        "status": done.status,
        "outcome": done.outcome,
        "ttft_ms": None if ttft is None else round(ttft * 1000, 1),
        "duration_ms": round((done.ended - done.started) * 1000, 1),
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
    }
    log.info(
        "%s %s model=%s worker=%s attempts=%d ttft=%sms tokens=%d+%d %.1fms request_id=%s",
        done.status,
        done.path,
        done.model,
        outcome.worker or "-",
        outcome.attempts,
        fields["ttft_ms"] if ttft is not None else "-",
        usage.prompt_tokens,
        usage.completion_tokens,
        fields["duration_ms"],
        done.request_id,
        extra={"fields": fields},
    )
