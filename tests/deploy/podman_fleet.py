"""A gateway and workers running in containers, seen from the host: the gateway's fleet view,
waiting for workers to join, and requests through the `openai` SDK (test_images_run, test_compose_run)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import openai

from bench.podman import Container, wait_for
from gateway.fleet_table import call_admin
from tests.conftest import MODEL

GATEWAY_PORT = 8080
WORKER_PORT = 8081
START_TIMEOUT_S = 180.0
ROUTABLE = {"healthy", "busy", "probation"}  # probation: new, on a slow start, but routed to


@dataclass(frozen=True)
class Secrets:
    join_token: str
    api_key: str
    admin_key: str

    @classmethod
    def made(cls) -> Secrets:
        return cls(*(secrets.token_urlsafe(24) for _ in range(3)))


@dataclass
class Fleet:
    gateway: Container
    workers: dict[str, Container]  # by worker id
    keys: Secrets
    url: str  # the gateway, from the host

    def client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key=self.keys.api_key, max_retries=0, timeout=120)

    def rows(self) -> list[dict[str, object]]:
        """The gateway's view of its fleet (/admin/v1/fleet); none while it cannot be reached."""
        try:
            return list(call_admin(self.url, self.keys.admin_key, "/admin/v1/fleet")["workers"])
        except OSError:
            return []

    def healthy_workers(self) -> set[str]:
        return {str(row["id"]) for row in self.rows() if row["health"] in ROUTABLE and row["models"]}

    def serving(self, worker_id: str) -> bool:
        """The worker has a request of this gateway in flight (so a stop or kill lands mid-request)."""
        return any(row["id"] == worker_id and row["in_flight"] for row in self.rows())

    def wait_healthy(self, *worker_ids: str) -> None:
        wait_for(
            lambda: set(worker_ids) <= self.healthy_workers(), f"workers {worker_ids} in the fleet", START_TIMEOUT_S
        )


async def answered_by(client: openai.AsyncOpenAI, stream: bool) -> str:
    """One request; the worker that answered it (the gateway's x-infercdn-worker header), with
    " (cut)" added for a stream that ended in the gateway's error event: its worker died mid-stream,
    after tokens had gone to the client, so nothing could move it to another worker."""
    raw = await client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Say something short."}],
        max_tokens=16,
        stream=stream,
    )
    worker = raw.headers["x-infercdn-worker"]
    answer = raw.parse()
    if stream:
        try:
            async for _ in answer:  # type: ignore[union-attr]
                pass
        except openai.APIError as error:
            assert "mid-stream" in error.message, error
            return f"{worker} (cut)"
    return worker
