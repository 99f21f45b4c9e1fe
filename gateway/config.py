"""The gateway's settings: one typed object per process."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gateway.enrollments import ENROLLMENT_MODES
from gateway.static_workers import parse_static_worker
from routing.health import HealthPolicy
from routing.policies import POLICIES
from routing.reputation import TrustPolicy
from routing.settings import require, state_dir
from routing.slo_floors import SloFloors, parse_slo_floors
from routing.telemetry import LOG_FORMATS
from routing.upstreams import parse_upstream


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    # Static workers: "URL [key_env=VAR]" (e.g. http://10.0.0.5:8081); VAR holds the
    # access_token that worker was given, if it has one.
    workers: tuple[str, ...] = ()
    # Any OpenAI-compatible server, with what it serves: "URL model=NAME:QUANT
    # [context=N] [key_env=VAR] [health=/PATH]" (see routing/upstreams.py).
    upstreams: tuple[str, ...] = ()
    max_body_bytes: int = 4 * 1024 * 1024
    connect_timeout_s: float = 3.0
    # A stream whose first byte has not come by then is tried elsewhere.
    first_byte_timeout_s: float = 60.0
    # The whole of a non-streaming request, and the longest gap in a stream.
    request_timeout_s: float = 600.0
    # All attempts together, until the client gets a first byte.
    deadline_s: float = 600.0
    max_attempts: int = 3
    # Caps on what a worker may send: a stream's whole duration and size, a
    # non-streaming answer's size. Past them the answer ends with an error.
    max_stream_s: float = 3600.0
    max_stream_bytes: int = 64 * 1024 * 1024
    max_response_bytes: int = 1024 * 1024
    max_embeddings_bytes: int = 64 * 1024 * 1024  # an embeddings answer: up to 2,048 vectors
    # The front door. A client must send its request head within header_timeout_s
    # of connecting and its body within body_timeout_s; an idle keep-alive
    # connection is closed after keepalive_timeout_s. At max_connections (0: half
    # the process's descriptor limit) or max_connections_per_client (one address),
    # the oldest idle connection is closed to make room.
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keepalive_timeout_s: float = 30.0
    max_connections: int = 0
    max_connections_per_client: int = 256
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
    # "text", or "json": one JSON object per line, request lines with their fields.
    log_format: str = "text"
    # The control plane. Workers sign their announcements with the join token;
    # empty means registration is off (static workers only).
    join_token: str = field(default="", repr=False)
    # Worker enrollments (id ↔ key) and the gateway's own key live in this SQLite file;
    # empty: $XDG_STATE_HOME/infercdn/gateway.sqlite3; ":memory:" forgets them at exit.
    state_file: str = ""
    # "auto": a worker with the join token enrolls at once; "manual": it waits for
    # "infercdn fleet approve ID".
    enrollment: str = "auto"
    # New enrollments accepted per minute from one address.
    enrollments_per_minute: int = 10
    # Networks registered workers may advertise (e.g. ["10.0.0.0/8"]); empty: any
    # address but loopback (unless this gateway is on loopback), link-local and metadata.
    worker_networks: tuple[str, ...] = ()
    # Registered workers that may share one address.
    max_workers_per_address: int = 16
    # Distinct values a worker-named metric label (model, worker, quantization, region)
    # may take; the rest read "other".
    metric_label_values: int = 200
    # A registered worker silent for this long is dropped from the fleet.
    worker_ttl_s: float = 10.0
    # How often registered workers are asked to heartbeat.
    heartbeat_interval_s: float = 2.0
    # Also watch a Consul catalog for workers (e.g. http://127.0.0.1:8500); empty = off.
    consul_url: str = ""
    consul_service: str = "infercdn-worker"
    # Where workers reach this gateway (e.g. https://gw1.example): with consul_url, announced there so that
    # tunnelled Consul workers (no gateway list) find it. Empty: not announced.
    public_url: str = ""
    # Clients: a file of hashed API keys ("infercdn keys create"), and/or one key.
    api_keys_file: str = ""
    api_key: str = field(default="", repr=False)
    # Limits for the api_key setting's key (keys in the file carry their own); 0 = none.
    api_key_requests_per_minute: int = 0
    api_key_tokens_per_minute: int = 0
    # Token budgets for the api_key setting's key, per UTC day and calendar month; 0 = none.
    api_key_tokens_per_day: int = 0
    api_key_tokens_per_month: int = 0
    # Guards /admin/…; without it, admin endpoints answer only an open loopback gateway.
    admin_key: str = field(default="", repr=False)
    # With no API keys, a gateway on a non-loopback address refuses to start unless this is set.
    allow_open: bool = False
    # Trust audits: verifiers ("infercdn verifier") that hold the weights files offers name by
    # SHA-256; a sample of real answers goes to them after delivery. Empty: no audits.
    verifiers: tuple[str, ...] = ()
    # The bearer key those verifiers accept (environment or config file only).
    verifier_key: str = field(default="", repr=False)
    # The share of a worker's auditable answers checked, by standing (see routing/reputation.py).
    audit_probation_rate: float = 0.10
    audit_trusted_rate: float = 0.03
    audit_suspect_rate: float = 0.25
    # A greedy answer is flagged when the reference found one of its tokens this many nats less
    # likely than its own choice. Honest answers on other hardware than the reference's reached 2.14
    # nats (6,000 scored, an H100 and a 16-core CPU), and one 3.9 ("infercdn fleet calibrate").
    audit_gap_nats: float = 2.5
    # Flags among a worker's last 50 checks that convict it. Two let an honest worker's rare outlier
    # convict it in its next 49 checks about 5% of the time; three, about 0.1%.
    audit_convict_flags: int = 3
    # Audits waiting for a verifier; beyond this they are dropped (and counted), never blocking a request.
    audit_queue: int = 256
    # Canaries: synthetic greedy requests, always audited, for workers with few greedy audits among their
    # last ones, at most this share of the requests routed (routing/canaries.py); 0: none.
    canary_share: float = 0.005
    # The usage ledger. "": SQLite beside state_file (gateway.ledger.sqlite3); a path: that SQLite
    # file; "postgresql://…": one database shared by many gateways (config file or environment only:
    # it may hold a password); "off": no ledger.
    ledger_url: str = field(default="", repr=False)
    # Raw rows (one per request, what receipts are made of) and hourly rollups are kept this long.
    ledger_raw_days: float = 35.0
    ledger_rollup_days: float = 400.0
    # 0: the ledger is written off the request path (a killed gateway may lose its last batch; a stopped one
    # loses nothing). > 0: an answer's last bytes wait this long at most for its commit (then go; it still
    # commits), so no answer a client holds is ever missing from the ledger, at a cost per request.
    ledger_wait_s: float = 0.0
    # Per-model SLO floors over the last hour: "MODEL min_availability=0.99 max_ttft_p99_s=2.5"
    # ("*": every other model). Workers missing one get that model's requests only when no worker meets it.
    model_slos: tuple[str, ...] = ()

    def check(self) -> None:
        require(0 <= self.port <= 65535, "gateway.port", f"must be 0-65535, got {self.port}")
        for spec in self.workers:
            parse_static_worker(spec, os.environ)  # raises ConfigError naming what is wrong
        for spec in self.upstreams:
            parse_upstream(spec, os.environ)  # raises ConfigError naming what is wrong
        require(self.max_body_bytes >= 1024, "gateway.max_body_bytes", "must be >= 1024")
        timeouts = (
            "connect_timeout_s",
            "first_byte_timeout_s",
            "request_timeout_s",
            "deadline_s",
            "max_stream_s",
            "header_timeout_s",
            "body_timeout_s",
            "keepalive_timeout_s",
        )
        intervals = ("refresh_interval_s", "probe_interval_s", "worker_ttl_s", "heartbeat_interval_s")
        for key in (*timeouts, *intervals):
            require(getattr(self, key) > 0, f"gateway.{key}", "must be > 0")
        require(self.max_attempts >= 1, "gateway.max_attempts", "must be >= 1")
        for key in ("max_stream_bytes", "max_response_bytes", "max_embeddings_bytes"):
            require(getattr(self, key) >= 1024, f"gateway.{key}", "must be >= 1024")
        require(self.max_connections >= 0, "gateway.max_connections", "must be >= 0 (0: from the descriptor limit)")
        require(self.max_connections_per_client >= 1, "gateway.max_connections_per_client", "must be >= 1")
        require(self.routing_policy in POLICIES, "gateway.routing_policy", f"must be one of {', '.join(POLICIES)}")
        require(self.eject_after_failures >= 1, "gateway.eject_after_failures", "must be >= 1")
        require(
            self.worker_ttl_s > self.heartbeat_interval_s,
            "gateway.worker_ttl_s",
            "must be longer than heartbeat_interval_s",
        )
        require(not self.join_token or len(self.join_token) >= 16, "gateway.join_token", "must be >= 16 characters")
        require(not self.admin_key or len(self.admin_key) >= 16, "gateway.admin_key", "must be >= 16 characters")
        require(
            bool(self.api_keys_file or self.api_key) or self.allow_open or self.loopback,
            "gateway.api_keys_file",
            f"no API keys are configured and host {self.host} is not loopback: create keys with "
            "'infercdn keys create', set api_key, or set allow_open = true to serve anyone",
        )
        limit_settings = ("requests_per_minute", "tokens_per_minute", "tokens_per_day", "tokens_per_month")
        for key in (f"api_key_{name}" for name in limit_settings):
            require(getattr(self, key) >= 0, f"gateway.{key}", "must be >= 0")
        if self.consul_url:
            require(bool(self.join_token), "gateway.join_token", "is needed to check workers found in Consul")
            require(self.consul_url.startswith(("http://", "https://")), "gateway.consul_url", "not an http(s) URL")
        require(
            not self.public_url or self.public_url.startswith(("http://", "https://")),
            "gateway.public_url",
            "not an http(s) URL",
        )
        require(self.enrollment in ENROLLMENT_MODES, "gateway.enrollment", "must be auto or manual")
        for key in ("enrollments_per_minute", "max_workers_per_address", "metric_label_values"):
            require(getattr(self, key) >= 1, f"gateway.{key}", "must be >= 1")
        for network in self.worker_networks:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                require(False, "gateway.worker_networks", f"not a network: {network!r}")
        for key in ("max_ejected_share", "panic_below_share"):
            require(0 <= getattr(self, key) <= 1, f"gateway.{key}", "must be between 0 and 1")
        require(self.log_format in LOG_FORMATS, "gateway.log_format", "must be text or json")
        for url in self.verifiers:
            require(url.startswith(("http://", "https://")), "gateway.verifiers", f"not an http(s) URL: {url!r}")
        require(
            not self.audits_enabled or len(self.verifier_key) >= 16, "gateway.verifier_key", "must be >= 16 characters"
        )
        for key in ("audit_probation_rate", "audit_trusted_rate", "audit_suspect_rate"):
            require(0 <= getattr(self, key) <= 1, f"gateway.{key}", "must be between 0 and 1")
        require(self.audit_gap_nats > 0, "gateway.audit_gap_nats", "must be > 0")
        require(1 <= self.audit_convict_flags <= 50, "gateway.audit_convict_flags", "must be from 1 to 50")
        require(0 <= self.canary_share <= 0.5, "gateway.canary_share", "must be from 0 (none) to 0.5")
        require(self.audit_queue >= 1, "gateway.audit_queue", "must be >= 1")
        require(
            self.ledger_url.startswith(("postgresql://", "postgres://")) or "://" not in self.ledger_url,
            "gateway.ledger_url",
            "must be a postgresql:// URL, a SQLite file path, or off",
        )
        parse_slo_floors(self.model_slos)  # raises ConfigError naming what is wrong
        for key in ("ledger_raw_days", "ledger_rollup_days"):
            require(getattr(self, key) > 0, f"gateway.{key}", "must be > 0")
        require(self.ledger_wait_s >= 0, "gateway.ledger_wait_s", "must be >= 0 (0: answers do not wait)")
        require(
            self.log_level in ("debug", "info", "warning", "error"),
            "gateway.log_level",
            "must be one of debug, info, warning, error",
        )

    @property
    def audits_enabled(self) -> bool:
        """Verifiers listed, or found in Consul (a verifier key proves them)."""
        return bool(self.verifiers or (self.consul_url and self.verifier_key))

    def state_path(self, env: Mapping[str, str]) -> str:
        return self.state_file or str(state_dir(env) / "gateway.sqlite3")

    def ledger_target(self, env: Mapping[str, str]) -> str:
        """Where the ledger lives: a PostgreSQL URL, a SQLite path (":memory:" beside an in-memory state), or ""."""
        if self.ledger_url == "off":
            return ""
        if self.ledger_url:
            return self.ledger_url
        state = self.state_path(env)
        return state if state == ":memory:" else str(Path(state).with_suffix(".ledger.sqlite3"))

    def trust_policy(self) -> TrustPolicy:
        return TrustPolicy(
            probation_rate=self.audit_probation_rate,
            trusted_rate=self.audit_trusted_rate,
            suspect_rate=self.audit_suspect_rate,
            convict_flags=self.audit_convict_flags,
        )

    def slo_floors(self) -> SloFloors:
        return parse_slo_floors(self.model_slos)

    def health_policy(self) -> HealthPolicy:
        return HealthPolicy(
            failures_to_eject=self.eject_after_failures,
            max_ejected_share=self.max_ejected_share,
            panic_below_share=self.panic_below_share,
        )

    @property
    def loopback(self) -> bool:
        return self.host in ("127.0.0.1", "localhost", "::1")
