"""Per-model SLO floors through a real gateway: seen in the fleet view and metrics, never a refusal."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.config import GatewayConfig
from routing.settings import ConfigError, load_settings
from tests.gateway.standin import MODEL, StandIn, answer_ok, answer_stream, start_gateway, start_standin
from tests.metrics_text import sample
from tests.waiting import wait_until

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}


async def stream_slowly(request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(0.15)  # its first token comes late (a slow worker's pace, not a wait on a timeout)
    return await answer_stream(request)


async def test_the_only_worker_below_its_floor_still_serves_and_the_fleet_view_says_so(
    session: aiohttp.ClientSession, gateways: list[TestServer], standins: list[StandIn]
) -> None:
    slow = await start_standin(standins, behaviour=stream_slowly)
    gw = await start_gateway(gateways, slow.url, probe_interval_s=0.1, model_slos=(f"{MODEL} max_ttft_p99_s=0.1",))

    async def chat() -> int:
        async with session.post(f"{gw}/v1/chat/completions", json={**CHAT, "stream": True}) as resp:
            await resp.read()
            return resp.status

    assert await asyncio.gather(*(chat() for _ in range(25))) == [200] * 25

    async def below_floor() -> list[str]:
        async with session.get(f"{gw}/admin/v1/fleet") as resp:
            return (await resp.json())["workers"][0]["below_slo_floor"]  # type: ignore[no-any-return]

    await wait_until(lambda: below_floor())  # weighed again on a probe's arrival
    assert await below_floor() == [MODEL]
    assert await chat() == 200  # no worker meets the floor: the best of them still serves
    assert await asyncio.to_thread(sample, gw, "infercdn_gateway_slo_floor_unmet_plans_total") >= 1


async def test_only_a_streams_first_byte_is_a_ttft_sample(
    session: aiohttp.ClientSession, gateways: list[TestServer], standins: list[StandIn]
) -> None:
    worker = await start_standin(standins, behaviour=answer_stream)
    gw = await start_gateway(gateways, worker.url)

    async def last_hour() -> dict[str, object]:
        async with session.get(f"{gw}/admin/v1/fleet") as resp:
            return (await resp.json())["workers"][0]["slo"]["1h"]  # type: ignore[no-any-return]

    worker.behaviour = answer_ok
    async with session.post(f"{gw}/v1/chat/completions", json=CHAT) as resp:
        assert resp.status == 200
    window = await last_hour()
    assert window["requests"] == 1 and window["success_ratio"] == 1.0
    assert window["ttft_p50_s"] is None  # a whole answer took as long as its work: no time to first token

    worker.behaviour = answer_stream
    async with session.post(f"{gw}/v1/chat/completions", json={**CHAT, "stream": True}) as resp:
        assert resp.status == 200 and (await resp.read()).endswith(b"data: [DONE]\n\n")
    window = await last_hour()
    assert window["requests"] == 2 and window["ttft_p50_s"] is not None


def test_a_bad_floor_is_a_config_error_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match=re.escape("gateway.model_slos: 'm min_availability=2'")):
        load_settings(GatewayConfig, section="gateway", toml={"gateway": {"model_slos": ["m min_availability=2"]}})
    env = {"INFERCDN_GATEWAY_MODEL_SLOS": "a max_ttft_p99_s=2, * min_availability=0.9"}
    config = load_settings(GatewayConfig, section="gateway", env=env)
    assert config.slo_floors().of("b").min_availability == 0.9  # type: ignore[union-attr]
