"""The gateway's settings: one typed object per process."""

from __future__ import annotations

from dataclasses import dataclass

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
    max_attempts: int = 3
    # How often workers' /v1/models is read to learn what they serve.
    refresh_interval_s: float = 5.0
    log_level: str = "info"

    def check(self) -> None:
        require(0 <= self.port <= 65535, "gateway.port", f"must be 0-65535, got {self.port}")
        for url in self.workers:
            require(url.startswith(("http://", "https://")), "gateway.workers", f"not an http(s) URL: {url!r}")
        require(self.max_body_bytes >= 1024, "gateway.max_body_bytes", "must be >= 1024")
        for key in ("connect_timeout_s", "first_byte_timeout_s", "request_timeout_s", "refresh_interval_s"):
            require(getattr(self, key) > 0, f"gateway.{key}", "must be > 0")
        require(self.max_attempts >= 1, "gateway.max_attempts", "must be >= 1")
        require(
            self.log_level in ("debug", "info", "warning", "error"),
            "gateway.log_level",
            "must be one of debug, info, warning, error",
        )
