"""The gateway's settings: one typed object per process."""

from __future__ import annotations

from dataclasses import dataclass

from routing.health import HealthPolicy
from routing.policies import POLICIES
from routing.settings import require


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    # Static upstream workers (base URLs, e.g. http://10.0.0.5:8081).
    workers: tuple[str, ...] = ()
    max_body_bytes: int = 4 * 1024 * 1024
    connect_timeout_s: float = 3.0
    # A stream whose first byte has not come by then is tried elsewhere.
    first_byte_timeout_s: float = 60.0
    # The whole of a non-streaming request, and the longest gap in a stream.
    request_timeout_s: float = 600.0
    # All attempts together, until the client gets a first byte.
    deadline_s: float = 600.0
    max_attempts: int = 3
    # How workers are ordered: expected-latency (ours), or a baseline:
    # round-robin, random, least-in-flight, lowest-latency.
    routing_policy: str = "expected-latency"
    # Active /health probes (RTT, reported load), jittered around this interval.
    probe_interval_s: float = 2.0
    # Passive outlier ejection and panic mode (see routing/health.py).
    eject_after_failures: int = 3
    max_ejected_share: float = 0.5
    panic_below_share: float = 0.5
    # How often workers' /v1/models is read to learn what they serve.
    refresh_interval_s: float = 5.0
    log_level: str = "info"

    def check(self) -> None:
        require(0 <= self.port <= 65535, "gateway.port", f"must be 0-65535, got {self.port}")
        for url in self.workers:
            require(url.startswith(("http://", "https://")), "gateway.workers", f"not an http(s) URL: {url!r}")
        require(self.max_body_bytes >= 1024, "gateway.max_body_bytes", "must be >= 1024")
        timeouts = ("connect_timeout_s", "first_byte_timeout_s", "request_timeout_s", "deadline_s")
        for key in (*timeouts, "refresh_interval_s", "probe_interval_s"):
            require(getattr(self, key) > 0, f"gateway.{key}", "must be > 0")
        require(self.max_attempts >= 1, "gateway.max_attempts", "must be >= 1")
        require(self.routing_policy in POLICIES, "gateway.routing_policy", f"must be one of {', '.join(POLICIES)}")
        require(self.eject_after_failures >= 1, "gateway.eject_after_failures", "must be >= 1")
        for key in ("max_ejected_share", "panic_below_share"):
            require(0 <= getattr(self, key) <= 1, f"gateway.{key}", "must be between 0 and 1")
        require(
            self.log_level in ("debug", "info", "warning", "error"),
            "gateway.log_level",
            "must be one of debug, info, warning, error",
        )

    def health_policy(self) -> HealthPolicy:
        return HealthPolicy(
            failures_to_eject=self.eject_after_failures,
            max_ejected_share=self.max_ejected_share,
            panic_below_share=self.panic_below_share,
        )
