"""One JSON log line per request on gateway and worker, joined by the request id."""

from __future__ import annotations

import json
import urllib.request

from bench.servers import running
from tests.conftest import MODEL
from tests.waiting import poll_until


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_gateway_and_worker_log_the_same_request_id_as_json() -> None:
    with (
        running("edge_worker", "--threads", "1", "--log-format", "json") as worker,
        running("gateway", "gateway", "--worker", worker.url, "--log-format", "json") as gateway,
    ):
        body = json.dumps({"model": MODEL, "prompt": "The capital of France is", "max_tokens": 3, "temperature": 0})
        request = urllib.request.Request(
            f"{gateway.url}/v1/completions",
            data=body.encode(),
            headers={"Content-Type": "application/json", "x-request-id": "trace-abc-123"},
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            usage = json.load(resp)["usage"]
        poll_until(lambda: "trace-abc-123" in gateway.log() and "trace-abc-123" in worker.log(), timeout_s=10)
        gateway_log, worker_log = gateway.log(), worker.log()

    assert all(line.startswith("{") for line in gateway_log.splitlines() if line.strip()), gateway_log
    (line,) = [r for r in json_lines(gateway_log) if r.get("request_id") == "trace-abc-123"]
    assert line["status"] == 200 and line["outcome"] == "served" and line["attempts"] == 1
    assert line["worker"] == worker.url and line["model"] == MODEL
    assert line["completion_tokens"] == usage["completion_tokens"] and line["prompt_tokens"] == usage["prompt_tokens"]
    assert isinstance(line["ttft_ms"], float) and line["ttft_ms"] > 0
    (seen,) = [r for r in json_lines(worker_log) if r.get("request_id") == "trace-abc-123"]
    assert seen["status"] == 200 and seen["completion_tokens"] == usage["completion_tokens"]
