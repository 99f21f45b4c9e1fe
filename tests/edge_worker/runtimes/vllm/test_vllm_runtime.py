"""The vLLM runtime: supervision, offers, load, relay and cancellation — against a stand-in vLLM
(tests/edge_worker/runtimes/vllm/fake_vllm.py; the real one runs in test_vllm_real.py where installed)."""

from __future__ import annotations

import base64
import json
import math
import os
import random
import signal
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp.test_utils import TestServer

from bench.servers import Server, free_port, running
from edge_worker.runtimes.vllm.weights_digest import directory_digest
from gateway.app import create_app
from gateway.config import GatewayConfig
from routing.audit_record import ASK_HEADER, AUDIT_COMMENT, AUDIT_FIELD, ChoiceIds, signed_by, unseal
from routing.identity import load_or_create
from routing.wire import REQUEST_ID
from tests.edge_worker.runtimes.vllm.fake_vllm import PROMPT_IDS, TOKEN_ID
from tests.metrics_text import sample
from tests.waiting import wait_until

TOKEN = "join-token-for-tests-0123456789"
ACCESS = "access-token-for-this-worker-only"
FAKE = Path(__file__).with_name("fake_vllm.py")
AWQ_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "max_position_embeddings": 4096,
    "torch_dtype": "float16",
    "quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True},
}


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "fake-vllm"


@pytest.fixture
def gateway_port() -> int:
    return free_port()


@pytest.fixture
def vllm_worker(tmp_path: Path, state_dir: Path, gateway_port: int) -> Iterator[Server]:
    """A worker of its own for each test, so no test depends on what another did to it."""
    with start_vllm_worker(tmp_path / "Tiny-Llama-AWQ", AWQ_CONFIG, state_dir, gateway_port) as worker:
        yield worker


@contextmanager
def start_vllm_worker(
    model: Path, hf_config: dict[str, object], state_dir: Path, gateway_port: int, *vllm_args: str
) -> Iterator[Server]:
    model.mkdir()
    (model / "config.json").write_text(json.dumps(hf_config))
    env = {
        "FAKE_VLLM_STATE": str(state_dir),
        "FAKE_VLLM_DELAY_S": "0.05",
        "FAKE_VLLM_CHUNKS": "20",
        "INFERCDN_WORKER_VLLM_LAUNCHER": f"{sys.executable},{FAKE}",
        "INFERCDN_WORKER_JOIN_TOKEN": TOKEN,
        "INFERCDN_WORKER_ACCESS_TOKEN": ACCESS,  # for the test to call it directly
        "INFERCDN_WORKER_KEY_FILE": str(model.parent / "worker.key"),
        "INFERCDN_WORKER_VLLM_HUNG_RESTART_S": "3",
    }
    args = ["--runtime", "vllm", "--model", str(model), "--gateway", f"http://127.0.0.1:{gateway_port}"]
    args += ["--worker-id", "gpu-1", "--vllm-arg=--max-model-len", *(f"--vllm-arg={a}" for a in vllm_args)]
    with running("edge_worker", *args, env=env) as worker:
        yield worker


@pytest.fixture
async def gateway(gateway_port: int) -> AsyncIterator[str]:
    config = GatewayConfig(join_token=TOKEN, heartbeat_interval_s=0.3, worker_ttl_s=3.0, state_file=":memory:")
    server = TestServer(create_app(config, rng=random.Random(1)), host="127.0.0.1", port=gateway_port)
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


def fake_requests(state_dir: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (state_dir / "requests.jsonl").read_text().splitlines()]


async def fleet_row(session: aiohttp.ClientSession, gw: str) -> dict[str, object] | None:
    async with session.get(f"{gw}/admin/v1/fleet") as resp:
        rows = (await resp.json())["workers"]
        return rows[0] if rows else None


async def test_a_vllm_worker_joins_and_serves_through_the_gateway(
    vllm_worker: Server, gateway: str, state_dir: Path
) -> None:
    async with aiohttp.ClientSession() as session:
        await wait_until(lambda: fleet_row(session, gateway), timeout_s=10)
        row = await fleet_row(session, gateway)
        assert row is not None
        assert row["runtime"] == "vllm" and row["models"] == ["tiny-llama-awq@awq"]
        async with session.get(f"{gateway}/v1/models") as resp:
            (model,) = (await resp.json())["data"]
            assert model["context_length"] == 2048  # vLLM's max_model_len, not config.json's 4096
            assert model["quantizations"] == [{"label": "awq", "bits": 4, "class": "int4"}]

        chat = {"model": "tiny-llama-awq:int4", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}
        async with session.post(f"{gateway}/v1/chat/completions", json=chat) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["choices"][0]["message"]["content"] == "x" * 20
            assert resp.headers["x-infercdn-worker"] == "gpu-1"

        async with session.post(f"{gateway}/v1/chat/completions", json={**chat, "stream": True}) as resp:
            assert resp.status == 200
            raw = (await resp.read()).decode()
        events = [e for e in raw.split("\n\n") if e]
        assert events[-1] == "data: [DONE]"
        assert not any('"choices": []' in e or '"choices":[]' in e for e in events)  # no chunk it did not ask for
        assert sum(e.startswith("data: {") for e in events) == 20

        sent = fake_requests(state_dir)[-2:]
        assert [r["model"] for r in sent] == ["tiny-llama-awq", "tiny-llama-awq"]  # the pin stripped
        assert sent[1]["stream_options"] == {"include_usage": True}  # asked for, to count tokens

        # Tokens counted on both sides; vLLM's queue reaches the gateway in heartbeats.
        metrics = vllm_worker.url
        assert sample(metrics, "infercdn_worker_generation_tokens_total", model="tiny-llama-awq") == 40
        model_info = {"model": "tiny-llama-awq", "runtime": "vllm", "quantization": "awq"}
        assert sample(metrics, "infercdn_worker_model_info", **model_info) == 1
        async with session.get(f"{gateway}/metrics") as resp:
            assert 'infercdn_gateway_completion_tokens_total{model="tiny-llama-awq"} 40.0' in await resp.text()

        async def queued_reported() -> bool:
            row = await fleet_row(session, gateway)
            return row is not None and row["queued"] == 3

        await wait_until(queued_reported, timeout_s=5)
        async with session.get(f"{vllm_worker.url}/health") as resp:
            health = await resp.json()
            assert health["queued"] == 3 and health["kv_cache_usage"] == 0.25


async def test_a_vllm_embedding_model_is_offered_for_embeddings_only(
    tmp_path: Path, state_dir: Path, gateway_port: int, gateway: str
) -> None:
    hf_config = {"architectures": ["BertModel"], "max_position_embeddings": 512, "torch_dtype": "float32"}
    with start_vllm_worker(tmp_path / "MiniLM", hf_config, state_dir, gateway_port, "--runner", "pooling"):
        async with aiohttp.ClientSession() as session:
            await wait_until(lambda: fleet_row(session, gateway), timeout_s=10)
        client = openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key="unused", max_retries=0)
        (model,) = (await client.models.list()).data
        capabilities = (model.model_extra or {})["capabilities"]
        assert capabilities["embeddings"] is True and capabilities["generation"] is False

        texts = ["one", "three", "a longer sentence"]
        for encoding in ("float", "base64"):
            reply = await client.embeddings.create(model="minilm:f32", input=texts, encoding_format=encoding)
            assert [d.index for d in reply.data] == [0, 1, 2]
            first: Any = reply.data[0].embedding
            if encoding == "base64":  # the SDK hands back what was asked for explicitly
                first = list(struct.unpack("<4f", base64.b64decode(first)))
            assert first == pytest.approx([x / math.sqrt(3**2 + 1 + 4 + 9) for x in (3, 1, 2, 3)], rel=1e-6)
            assert reply.usage.prompt_tokens == 5
        sent = fake_requests(state_dir)[-1]
        assert sent["model"] == "minilm" and sent["input"] == texts  # the pin stripped, the rest as sent

        with pytest.raises(openai.BadRequestError, match="has no worker that supports generation"):
            await client.chat.completions.create(model="minilm", messages=[{"role": "user", "content": "hi"}])


async def test_a_client_going_away_aborts_the_generation_in_vllm(vllm_worker: Server, state_dir: Path) -> None:
    before = int((state_dir / "aborted").read_text()) if (state_dir / "aborted").exists() else 0
    body = {"model": "tiny-llama-awq", "prompt": "hi", "stream": True}
    headers = {"Authorization": f"Bearer {ACCESS}"}
    async with aiohttp.ClientSession() as session:
        resp = await session.post(f"{vllm_worker.url}/v1/completions", json=body, headers=headers)
        assert resp.status == 200
        await resp.content.readany()
        resp.close()  # gone after the first chunk
    await wait_until(lambda: (state_dir / "aborted").exists() and int((state_dir / "aborted").read_text()) > before)


async def test_a_dead_vllm_is_restarted_and_the_worker_is_unhealthy_meanwhile(
    vllm_worker: Server, state_dir: Path
) -> None:
    old_pid = int((state_dir / "pid").read_text())
    os.kill(old_pid, signal.SIGKILL)
    async with aiohttp.ClientSession() as session:

        async def health_is(status: int) -> bool:
            async with session.get(f"{vllm_worker.url}/health") as resp:
                return resp.status == status

        await wait_until(lambda: health_is(503), timeout_s=5)
        started = time.monotonic()
        await wait_until(lambda: health_is(200), timeout_s=30)
        assert time.monotonic() - started >= 0.5  # after a backoff, not in a tight loop
    assert int((state_dir / "pid").read_text()) != old_pid
    assert "starting it again" in vllm_worker.log()


async def test_a_hung_vllm_is_noticed_then_restarted(vllm_worker: Server, state_dir: Path) -> None:
    async with aiohttp.ClientSession() as session:

        async def health_is(status: int) -> bool:
            async with session.get(f"{vllm_worker.url}/health") as resp:
                return resp.status == status

        await wait_until(lambda: health_is(200), timeout_s=10)
        hung_pid = int((state_dir / "pid").read_text())
        (state_dir / "hang").write_text(str(hung_pid))  # alive, listening, but its /health never answers
        await wait_until(lambda: health_is(503), timeout_s=10)
        await wait_until(lambda: (state_dir / "pid").read_text() != str(hung_pid), timeout_s=20)
        await wait_until(lambda: health_is(200), timeout_s=20)
    assert "restarting it" in vllm_worker.log()


def test_stopping_the_worker_stops_vllm(vllm_worker: Server, state_dir: Path) -> None:
    pid = int((state_dir / "pid").read_text())
    vllm_worker.process.terminate()
    assert vllm_worker.process.wait(30) == 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"vLLM (pid {pid}) outlived its worker")


async def test_a_gateway_asking_for_an_audit_record_gets_vllms_ids_sealed_and_the_client_sees_none(
    vllm_worker: Server, tmp_path: Path, state_dir: Path
) -> None:
    """The relay asks vLLM for the ids behind the answer, takes them out, and seals them with the worker's key:
    a field of a whole answer, a comment before a stream's end. A client that asked for the ids keeps them."""
    model = tmp_path / "Tiny-Llama-AWQ"
    key = load_or_create(model.parent / "worker.key").public_key
    headers = {"Authorization": f"Bearer {ACCESS}", ASK_HEADER: "1", REQUEST_ID: "req-1"}
    chat = {"model": "tiny-llama-awq", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}
    url = f"{vllm_worker.url}/v1/chat/completions"
    async with aiohttp.ClientSession(headers=headers) as session:
        await wait_until(lambda: vllm_healthy(session, vllm_worker.url), timeout_s=20)
        async with session.post(url, json=chat) as resp:
            answer = await resp.json()
        async with session.post(url, json={**chat, "stream": True}) as resp:
            events = (await resp.read()).decode().split("\n\n")
        async with session.post(url, json={**chat, "return_token_ids": True}) as resp:
            asked = await resp.json()
        async with session.get(f"{vllm_worker.url}/v1/models") as resp:
            (card,) = (await resp.json())["data"]

    assert "prompt_token_ids" not in answer and "token_ids" not in answer["choices"][0]
    whole = unseal(answer.pop(AUDIT_FIELD))
    comments = [e for e in events if e.startswith(AUDIT_COMMENT.decode())]
    assert len(comments) == 1 and events[events.index(comments[0]) + 1] == "data: [DONE]"
    assert not any("token_ids" in e for e in events if e.startswith("data:"))
    streamed = unseal(comments[0].removeprefix(AUDIT_COMMENT.decode()))
    for sealed in (whole, streamed):
        assert signed_by(sealed, key)
        record = sealed.record
        assert record.request_id == "req-1" and record.worker_id == "gpu-1" and record.model == "tiny-llama-awq"
        assert list(record.prompt) == PROMPT_IDS
        assert record.choices == (ChoiceIds((TOKEN_ID,) * 20, None),)  # cut by length: no end token
    assert asked["prompt_token_ids"] == PROMPT_IDS and asked["choices"][0]["token_ids"] == [TOKEN_ID] * 20
    assert [r.get("return_token_ids") for r in fake_requests(state_dir)[-3:]] == [True, True, True]
    # Its offer names the model directory by digest, for audits to check against.
    assert card["sha256"] == directory_digest(model)


async def vllm_healthy(session: aiohttp.ClientSession, url: str) -> bool:
    async with session.get(f"{url}/health") as resp:
        return resp.status == 200


def test_a_vllm_worker_never_imports_llama_cpp() -> None:
    """The CUDA image has no llama-cpp-python: building a vLLM worker must not import it."""
    code = (
        "import sys; sys.modules['llama_cpp'] = None\n"  # any import of it now fails
        "from edge_worker.app import create_app\n"
        "from edge_worker.config import WorkerConfig\n"
        "create_app(WorkerConfig(runtime='vllm', models=('some/model',)))\n"
        "assert 'edge_worker.runtimes.llama_cpp' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
