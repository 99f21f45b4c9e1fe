"""A foreign OpenAI-compatible server (as vLLM or llama-server) listed in the gateway config."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.app import create_app
from gateway.config import GatewayConfig
from tests.waiting import wait_until

KEY = "sk-upstream-secret"


@pytest.fixture
async def foreign() -> AsyncIterator[tuple[str, list[dict[str, object]]]]:
    """Answers like vLLM with --api-key: an empty 200 on /health, 401 without the key, its own model name."""
    seen: list[dict[str, object]] = []

    async def health(request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def chat(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            return web.json_response({"error": {"message": "unauthorized"}}, status=401)
        body = await request.json()
        seen.append(body)
        if body.get("model") != "foreign-model":
            return web.json_response({"error": {"message": "no such model"}}, status=404)
        return web.json_response({"id": "x", "object": "chat.completion", "choices": [{"message": {"content": "ok"}}]})

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_post("/v1/chat/completions", chat)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/"), seen
    await server.close()


async def test_a_listed_upstream_is_probed_and_routed_with_its_key(
    foreign: tuple[str, list[dict[str, object]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = foreign
    monkeypatch.setenv("TEST_UPSTREAM_KEY", KEY)
    config = GatewayConfig(upstreams=(f"{url} model=foreign-model:awq context=8192 key_env=TEST_UPSTREAM_KEY",))
    config.check()
    gateway = TestServer(create_app(config, rng=random.Random(1)), host="127.0.0.1")
    await gateway.start_server()
    gw = str(gateway.make_url("")).rstrip("/")
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{gw}/v1/models") as resp:
                (model,) = (await resp.json())["data"]
                assert model["id"] == "foreign-model" and model["quantizations"][0]["class"] == "int4"
            body = {"model": "foreign-model:int4", "messages": [{"role": "user", "content": "hi"}], "region": "eu"}
            async with session.post(f"{gw}/v1/chat/completions", json=body) as resp:
                assert resp.status == 200, await resp.text()
            assert seen == [{"model": "foreign-model", "messages": [{"role": "user", "content": "hi"}]}]

            async def probed() -> bool:
                async with session.get(f"{gw}/admin/v1/fleet") as resp:
                    (row,) = (await resp.json())["workers"]
                    assert row["source"] == "upstream" and row["health"] != "unreachable"
                    return row["rtt_ms"] is not None  # its empty-bodied /health counts as a probe answer

            await wait_until(probed, timeout_s=5)
    finally:
        await gateway.close()


@pytest.fixture
async def ollama_like() -> AsyncIterator[tuple[str, list[bytes]]]:
    """Answers as Ollama does: plain model entries, no /health, and whatever chat it is sent."""
    seen: list[bytes] = []

    async def models(request: web.Request) -> web.Response:
        data = [{"id": "llama3.2:3b", "object": "model", "owned_by": "library"}, {"id": "qwen2.5:7b-q4_K_M"}]
        return web.json_response({"object": "list", "data": data})

    async def chat(request: web.Request) -> web.Response:
        seen.append(await request.read())
        return web.json_response({"id": "x", "object": "chat.completion", "choices": [{"message": {"content": "ok"}}]})

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/"), seen
    await server.close()


async def test_a_plain_openai_server_as_a_worker(
    ollama_like: tuple[str, list[bytes]], caplog: pytest.LogCaptureFixture
) -> None:
    url, seen = ollama_like
    caplog.set_level("INFO", logger="gateway.static_workers")
    gateway = TestServer(create_app(GatewayConfig(workers=(url,)), rng=random.Random(1)), host="127.0.0.1")
    await gateway.start_server()
    gw = str(gateway.make_url("")).rstrip("/")
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{gw}/v1/models") as resp:
                models = {m["id"]: m for m in (await resp.json())["data"]}
            assert models["llama3.2:3b"]["quantizations"][0]["label"] == "unknown"  # "3b" is a size
            assert models["qwen2.5:7b-q4_K_M"]["quantizations"][0]["label"] == "Q4_K_M"
            assert "plain OpenAI-compatible server" in caplog.text
            # Whatever it is asked is its to refuse: tools go to it byte for byte.
            raw = json.dumps(
                {
                    "model": "llama3.2:3b",
                    "messages": [{"role": "user", "content": "hi"}],
                    "tools": [{"type": "function", "function": {"name": "f"}}],
                    "logprobs": True,
                    "n": 2,
                }
            ).encode()
            async with session.post(f"{gw}/v1/chat/completions", data=raw) as resp:
                assert resp.status == 200, await resp.text()
            assert seen == [raw]

            async def healthy() -> bool:
                async with session.get(f"{gw}/admin/v1/fleet") as resp:
                    (row,) = (await resp.json())["workers"]
                    return row["rtt_ms"] is not None  # probed on /v1/models: it has no /health

            await wait_until(healthy, timeout_s=5)
    finally:
        await gateway.close()


async def test_an_upstream_that_declares_no_tools_gets_none(foreign: tuple[str, list[dict[str, object]]]) -> None:
    url, seen = foreign
    config = GatewayConfig(upstreams=(f"{url} model=foreign-model capabilities=logprobs",))
    gateway = TestServer(create_app(config, rng=random.Random(1)), host="127.0.0.1")
    await gateway.start_server()
    gw = str(gateway.make_url("")).rstrip("/")
    try:
        async with aiohttp.ClientSession() as session:
            body = {
                "model": "foreign-model",
                "messages": [{"role": "user", "content": "hi"}],
                "tools": [{"type": "function", "function": {"name": "f"}}],
            }
            async with session.post(f"{gw}/v1/chat/completions", json=body) as resp:
                error = (await resp.json())["error"]
                assert resp.status == 400
            assert error["message"] == "model 'foreign-model' has no worker that supports tools."
            assert error["param"] == "tools" and seen == []
    finally:
        await gateway.close()
