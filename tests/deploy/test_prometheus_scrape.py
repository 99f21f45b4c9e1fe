"""A real Prometheus (Debian's package) scrapes a real gateway and worker; what it stored matches the traffic."""

from __future__ import annotations

import asyncio
import json
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from bench.servers import Server, free_port, running
from tests.conftest import MODEL
from tests.deploy.monitoring import tool


@pytest.fixture(scope="module")
def fleet() -> Iterator[tuple[Server, Server]]:
    with (
        running("edge_worker", "--threads", "1") as worker,
        running("gateway", "gateway", "--worker", worker.url) as gateway,
    ):
        yield gateway, worker


@pytest.fixture(scope="module")
def prometheus(fleet: tuple[Server, Server]) -> Iterator[str]:
    gateway, worker = fleet
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        config = Path(data) / "prometheus.yml"
        config.write_text(
            json.dumps(  # JSON is YAML
                {
                    "global": {"scrape_interval": "1s"},
                    "scrape_configs": [
                        {"job_name": "gateway", "static_configs": [{"targets": [gateway.url.removeprefix("http://")]}]},
                        {"job_name": "worker", "static_configs": [{"targets": [worker.url.removeprefix("http://")]}]},
                    ],
                }
            )
        )
        process = subprocess.Popen(
            [
                tool("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={data}/tsdb",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as resp:
                        if resp.status == 200:
                            break
                except OSError:
                    time.sleep(0.2)
            yield url
        finally:
            process.terminate()
            process.wait(30)


def query(prometheus: str, expr: str) -> float | None:
    with urllib.request.urlopen(f"{prometheus}/api/v1/query?{urllib.parse.urlencode({'query': expr})}") as resp:
        result = json.load(resp)["data"]["result"]
    return float(result[0]["value"][1]) if result else None


async def eventually(prometheus: str, expr: str, expected: float, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    value = None
    while time.monotonic() < deadline:
        value = await asyncio.to_thread(query, prometheus, expr)
        if value == expected:
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"{expr} = {value}, expected {expected}")


async def test_prometheus_sees_the_traffic_that_was_sent(fleet: tuple[Server, Server], prometheus: str) -> None:
    gateway, _ = fleet
    client = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)
    completion_tokens = 0
    for _ in range(3):
        reply = await client.completions.create(model=MODEL, prompt="1, 2, 3,", max_tokens=5, temperature=0)
        assert reply.usage is not None
        completion_tokens += reply.usage.completion_tokens
    stream = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=6, temperature=0, stream=True
    )
    chunks = [chunk async for chunk in stream]
    streamed = sum(1 for c in chunks if c.choices and c.choices[0].delta.content)
    assert streamed > 0

    await eventually(prometheus, 'up{job="gateway"}', 1)
    await eventually(prometheus, 'up{job="worker"}', 1)
    await eventually(prometheus, 'sum(infercdn_gateway_requests_total{status="200"})', 4)
    await eventually(prometheus, "sum(infercdn_gateway_time_to_first_token_seconds_count)", 4)
    await eventually(prometheus, "sum(infercdn_worker_requests_total)", 4)
    await eventually(prometheus, "sum(infercdn_worker_time_to_first_token_seconds_count)", 4)
    # Tokens: the gateway counts what workers report, streams included (no include_usage was asked).
    total = await asyncio.to_thread(query, prometheus, "sum(infercdn_worker_generation_tokens_total)")
    assert total is not None and total >= completion_tokens + streamed
    await eventually(prometheus, "sum(infercdn_gateway_completion_tokens_total)", total)
    await eventually(
        prometheus,
        "sum(infercdn_gateway_prompt_tokens_total)",
        await asyncio.to_thread(query, prometheus, "sum(infercdn_worker_prompt_tokens_total)") or -1,
    )
    await eventually(prometheus, 'sum(infercdn_gateway_fleet_workers{healthy="true"})', 1)
