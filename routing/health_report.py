"""What a worker's ``/health`` says: one typed record, written by both runtimes, read by the prober.

``status`` is ``ok`` (answered 200) or ``starting`` (answered 503: loading,
or its engine is down). Read back, every number is bounded as a heartbeat's
is; a body that is not an InferCDN report (any OpenAI server may be an
upstream, and answer its own ``/health``) gives no load rather than an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from routing.announce import MAX_QUEUE_REPORTED
from routing.bounds import bounded_float, bounded_int
from routing.errors import InvalidRequest
from routing.fleet import Load

OK = "ok"
STARTING = "starting"


@dataclass(frozen=True, slots=True)
class HealthReport:
    status: str  # OK | STARTING
    runtime: str
    models: tuple[str, ...]
    in_flight: int
    queued: int
    kv_cache_usage: float | None = None

    @property
    def http_status(self) -> int:
        return 200 if self.status == OK else 503

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": self.status,
            "runtime": self.runtime,
            "models": list(self.models),
            "in_flight": self.in_flight,
            "queued": self.queued,
        }
        if self.kv_cache_usage is not None:
            body["kv_cache_usage"] = self.kv_cache_usage
        return body


def load_from_report(body: Any) -> Load | None:
    """The load an InferCDN worker's report gives; None for anything else or anything out of bounds."""
    if not isinstance(body, dict) or "in_flight" not in body or "queued" not in body:
        return None
    try:
        usage = body.get("kv_cache_usage")
        return Load(
            in_flight=bounded_int(body["in_flight"], "in_flight", 0, MAX_QUEUE_REPORTED),
            queued=bounded_int(body["queued"], "queued", 0, MAX_QUEUE_REPORTED),
            kv_cache_usage=None if usage is None else bounded_float(usage, "kv_cache_usage", 0.0, 1.0),
        )
    except InvalidRequest:
        return None
