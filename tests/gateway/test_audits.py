"""Audits of real traffic: real registered workers, a real verifier, a real gateway, on loopback.

The cheat is a real worker serving SmolLM2 requantized to Q2_K that re-registers (with its own key,
as any worker may) claiming the bundled Q4_1 file's digest and label. The honest worker serves that
file. Every auditable answer is audited (rates 1.0).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bench.servers import free_port
from edge_worker.runtimes.llama_cpp.catalog import bundled_model_path, file_sha256
from edge_worker.verifier.app import create_app as create_verifier
from edge_worker.verifier.config import VerifierConfig
from gateway import api
from routing.announce import REGISTER_PATH, Hardware, Registration, pack
from routing.consul_client import consul_client
from routing.identity import load_or_create
from routing.reputation import TrustPolicy
from routing.verifier_presence import SERVICE as VERIFIER_SERVICE
from routing.verifier_presence import presence_meta
from routing.verifier_presence import service_id as verifier_service_id
from tests.conftest import MODEL
from tests.gateway.consul_standin import ConsulStandIn
from tests.gateway.test_registry import post_signed, registered_worker, start_gateway
from tests.metrics_text import sample
from tests.waiting import wait_until

VERIFIER_KEY = "verifier-key-for-tests-0123456789"
PROMPTS = ["What is 2+2?", "Name a colour.", "Say hello.", "List two fruits.", "What is the sun?", "Count to five."]


async def start_verifier(port: int = 0, **settings: Any) -> tuple[TestServer, str]:
    config = VerifierConfig(
        model=str(bundled_model_path()), key=VERIFIER_KEY, threads=1, context_length=1024, **settings
    )
    server = TestServer(create_verifier(config), host="127.0.0.1", port=port)
    await server.start_server()
    return server, str(server.make_url("")).rstrip("/")


async def audited_gateway(verifier: str, state_file: Path, port: int = 0, **settings: Any) -> tuple[TestServer, str]:
    return await start_gateway(
        port,
        **settings,
        verifiers=(verifier,),
        verifier_key=VERIFIER_KEY,
        audit_probation_rate=1.0,
        audit_trusted_rate=1.0,
        audit_suspect_rate=1.0,
        state_file=str(state_file),
    )


async def ask(session: aiohttp.ClientSession, gw: str, i: int, *, none_left: bool = False, **extra: Any) -> str:
    """Who answered; with ``none_left``, "" when no worker may (the only one was convicted meanwhile)."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
        "max_tokens": 16,
        "temperature": 0,
        **extra,
    }
    async with session.post(f"{gw}/v1/chat/completions", json=body) as resp:
        if none_left and resp.status == 503:
            return ""
        assert resp.status == 200, await resp.text()
        text = await resp.text()
        # The record is the gateway's alone: neither a field nor a comment (nor the ids vLLM was asked for)
        # reaches the client.
        assert "infercdn_audit" not in text and ": audit" not in text and "token_ids" not in text
        return resp.headers["x-infercdn-worker"]


async def audits(session: aiohttp.ClientSession, gw: str) -> dict[str, dict[str, Any]]:
    async with session.get(f"{gw}/admin/v1/audits") as resp:
        return {row["worker_id"]: row for row in (await resp.json())["workers"]}


async def until_convicted(
    session: aiohttp.ClientSession,
    server: TestServer,
    gw: str,
    asker: Callable[[int], Awaitable[str]],
    requests: int,
    together: int,
) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Requests ``together`` at a time until the worker "cheat" is convicted (or ``requests`` are sent), then,
    once every audit is done, who served them and the audits. Several at a time: one at a time, the honest
    worker is always free, and a suspect (weight 0.3) gets none."""
    served: list[str] = []
    for first in range(0, requests, together):
        served += await asyncio.gather(*(asker(i) for i in range(first, first + together)))
        if (await audits(session, gw)).get("cheat", {}).get("standing") == "convicted":
            break
    auditor = server.app[api.STATE].auditor
    assert auditor is not None
    await wait_until(lambda: auditor.idle, 180)  # checks may lag the requests (a vLLM one takes seconds here)
    return served, await audits(session, gw)


async def lie_about_weights(session: aiohttp.ClientSession, gw: str, server: TestServer, cheat: str, key: Path) -> None:
    """Re-register the cheat under its own key, claiming the honest worker's file and quantization."""
    fleet = server.app[api.STATE].fleet
    await wait_until(lambda: fleet.get(cheat) is not None and fleet.get("honest") is not None)
    cheat_state, honest_state = fleet.get(cheat), fleet.get("honest")
    assert cheat_state is not None and honest_state is not None
    true_offer, claimed = cheat_state.offers[0], honest_state.offers[0]
    assert true_offer.sha256 != claimed.sha256 and true_offer.quantization.label == "Q2_K"
    lie = replace(true_offer, quantization=claimed.quantization, sha256=claimed.sha256)
    registration = Registration(cheat, cheat_state.worker.url, "eu", "llama.cpp", Hardware(cpu="x", cores=2), 1, (lie,))
    status, _ = await post_signed(session, gw, REGISTER_PATH, pack(registration), key=load_or_create(key))
    assert status == 200
    await wait_until(lambda: (s := fleet.get(cheat)) is not None and s.offers[0].sha256 == claimed.sha256)


async def test_a_worker_serving_a_cruder_model_than_it_claims_is_convicted_and_gets_no_more_traffic(
    session: aiohttp.ClientSession, cheaper_models: dict[str, Path]
) -> None:
    verifier, verifier_url = await start_verifier()
    with tempfile.TemporaryDirectory() as folder:
        state_file, cheat_key = Path(folder) / "gateway.sqlite3", Path(folder) / "cheat.key"
        load_or_create(cheat_key)
        server, gw = await audited_gateway(verifier_url, state_file)
        with (
            registered_worker(gw, "honest"),
            registered_worker(gw, "cheat", key_file=cheat_key, model=cheaper_models["Q2_K"]),
        ):
            await lie_about_weights(session, gw, server, "cheat", cheat_key)
            served, found = await until_convicted(session, server, gw, lambda i: ask(session, gw, i), 240, 4)
            assert found["cheat"]["standing"] == "convicted", found
            assert found["cheat"]["checks"] <= 50
            evidence = found["cheat"]["evidence"]
            assert len(evidence) >= 2 and all("nats off the reference" in e["reason"] for e in evidence)
            assert all(e["largest_gaps"][0][1] > 1.0 for e in evidence)
            assert found["honest"]["flags"] == 0 and found["honest"]["checks"] >= 1
            assert "cheat" in served  # it was routed to, and caught on real traffic
            flagged = await asyncio.to_thread(sample, gw, "infercdn_gateway_audits_total", result="flagged")
            assert flagged >= 2
            # Convicted: nothing more goes its way, and the fleet says why.
            assert {await ask(session, gw, i) for i in range(6)} == {"honest"}
            async with session.get(f"{gw}/admin/v1/fleet") as resp:
                rows = {w["id"]: w for w in (await resp.json())["workers"]}
            assert rows["cheat"]["trust"] == "convicted" and rows["honest"]["trust"] in ("probation", "trusted")
            # Calibration: the honest worker's greedy gaps stay under the threshold, the cheat's do not.
            async with session.get(f"{gw}/admin/v1/audits/gaps") as resp:
                gaps = await resp.json()
            (on_model,) = gaps["models"]
            spread = {w["worker_id"]: w for w in on_model["workers"]}
            assert spread["honest"]["largest"] < gaps["audit_gap_nats"] < spread["cheat"]["largest"]
            assert spread["honest"]["checks"] >= 1 and spread["cheat"]["checks"] >= 2

            # A restart keeps the conviction: the cheat registers again (truthfully now) and still gets nothing.
            port = server.port
            assert port is not None
            await server.close()
            server, gw = await audited_gateway(verifier_url, state_file, port)
            await wait_until(lambda: len(server.app[api.STATE].fleet) == 2, timeout_s=20)
            assert (await audits(session, gw))["cheat"]["standing"] == "convicted"
            assert {await ask(session, gw, i) for i in range(6)} == {"honest"}

            # Only an operator clears it: back on probation, and routed to again.
            async with session.post(f"{gw}/admin/v1/workers/cheat/pardon") as resp:
                assert resp.status == 204
            async with session.post(f"{gw}/admin/v1/workers/cheat/pardon") as resp:
                assert resp.status == 404  # not convicted any more
            assert (await audits(session, gw))["cheat"]["standing"] == "probation"
        await server.close()
    await verifier.close()


async def test_a_cheat_answering_only_sampled_requests_is_convicted_by_its_running_z(
    session: aiohttp.ClientSession, cheaper_models: dict[str, Path]
) -> None:
    """No answer of a cruder model is flagged on its own at temperature 1 (every token could be drawn): the
    running ΣZ/√n over its sampled checks convicts it, and that sum is the evidence an operator reads."""
    verifier, verifier_url = await start_verifier()
    with tempfile.TemporaryDirectory() as folder:
        state_file, cheat_key = Path(folder) / "gateway.sqlite3", Path(folder) / "cheat.key"
        load_or_create(cheat_key)
        # No canaries: those are greedy, and would catch it by a gap.
        server, gw = await audited_gateway(verifier_url, state_file, canary_share=0.0)
        with (
            registered_worker(gw, "honest"),
            registered_worker(gw, "cheat", key_file=cheat_key, model=cheaper_models["Q2_K"]),
        ):
            await lie_about_weights(session, gw, server, "cheat", cheat_key)
            sampled = lambda i: ask(session, gw, i, temperature=1.0, max_tokens=32)  # noqa: E731
            served, found = await until_convicted(session, server, gw, sampled, 240, 4)
        await server.close()
    await verifier.close()
    cheat, honest = found["cheat"], found["honest"]
    assert cheat["standing"] == "convicted" and cheat["flags"] == 0 and cheat["checks"] <= 50, cheat
    assert cheat["running_z"] < TrustPolicy().convict_z
    (why,) = [e for e in cheat["evidence"] if "running Z" in e["reason"] and e["z"] is not None][-1:]
    assert why["reason"].startswith("a running Z of -") and why["request_id"]
    assert honest["flags"] == 0 and honest["checks"] >= 1 and honest["standing"] in ("probation", "trusted")
    assert honest["running_z"] > TrustPolicy().suspect_z
    assert "cheat" in served


WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
FORCED_CALL = {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "weather"}}}
REQUIRED_CALL = {"tools": [WEATHER], "tool_choice": "required"}
MAY_CALL = {"tools": [WEATHER], "tool_choice": "auto"}
SCHEMA = {
    "response_format": {
        "type": "json_schema",
        "json_schema": {"name": "fact", "schema": {"type": "object", "properties": {"fact": {"type": "string"}}}},
    }
}
# Each went unaudited once: a worker could have cheated on exactly those.
ALSO_AUDITED = [
    {"n": 2, "temperature": 0},
    {"n": 2, "temperature": 0, "stream": True},
    {"n": 2, "temperature": 0.8},
    {"n": 2, "temperature": 0.8, "stream": True},
    {"frequency_penalty": 1.0, "presence_penalty": 0.5},
    {"frequency_penalty": 1.0, "temperature": 0.8, "stream": True},
    {**SCHEMA, "max_tokens": 32},
    {**SCHEMA, "max_tokens": 32, "temperature": 0.8, "stream": True},
    {**FORCED_CALL, "max_tokens": 32},
    {**FORCED_CALL, "max_tokens": 32, "stream": True},
    {**REQUIRED_CALL, "max_tokens": 32},
    {**REQUIRED_CALL, "max_tokens": 32, "temperature": 0.8, "stream": True},
    {**MAY_CALL, "max_tokens": 32},
    {**MAY_CALL, "max_tokens": 32, "stream": True},
]


async def test_several_choices_penalties_schemas_and_tool_calls_are_audited_and_an_honest_worker_stays_clean(
    session: aiohttp.ClientSession,
) -> None:
    verifier, verifier_url = await start_verifier()
    with tempfile.TemporaryDirectory() as folder:
        server, gw = await audited_gateway(verifier_url, Path(folder) / "gateway.sqlite3")
        try:
            with registered_worker(gw, "honest"):
                await wait_until(lambda: server.app[api.STATE].fleet.get("honest") is not None)
                for i, extra in enumerate(ALSO_AUDITED):
                    assert await ask(session, gw, i, **extra) == "honest"
                auditor = server.app[api.STATE].auditor
                assert auditor is not None

                async def all_checked() -> bool:
                    # The checks themselves, not idleness alone: the auditor is idle too before an answer
                    # is offered to it, which for a stream comes only after the client has its [DONE].
                    return auditor.idle and (await audits(session, gw))["honest"]["checks"] >= len(ALSO_AUDITED)

                await wait_until(all_checked, timeout_s=120)
                found = (await audits(session, gw))["honest"]
                assert found["checks"] == len(ALSO_AUDITED) and found["flags"] == 0, found
        finally:
            await server.close()
    await verifier.close()


async def test_with_the_verifier_down_answers_are_served_and_the_audits_dropped_and_counted(
    session: aiohttp.ClientSession,
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        server, gw = await audited_gateway(f"http://127.0.0.1:{free_port()}", Path(folder) / "gateway.sqlite3")
        with registered_worker(gw, "honest"):
            await wait_until(lambda: len(server.app[api.STATE].fleet) == 1)
            assert [await ask(session, gw, i, stream=i % 2 == 1) for i in range(4)] == ["honest"] * 4
            dropped = await asyncio.to_thread(sample, gw, "infercdn_gateway_audits_dropped_total", reason="no_verifier")
            assert dropped == 4
            assert (await audits(session, gw))["honest"]["checks"] == 0
        await server.close()


async def test_gateways_find_verifiers_in_consul_proven_by_the_verifier_key(caplog: pytest.LogCaptureFixture) -> None:
    """Verifiers were a static list on every gateway; one found in Consul must prove it holds the key, or a
    Consul writer could collect the key and the audited answers (and convict honest workers)."""
    agent = await ConsulStandIn().start()
    port = free_port()
    verifier, verifier_url = await start_verifier(port, consul_url=agent.url, public_url=f"http://127.0.0.1:{port}")
    forged = presence_meta("http://10.6.6.6:8090", "not-the-fleets-verifier-key", time.time())
    client = consul_client(agent.url)
    await client.agent.service.register(VERIFIER_SERVICE, service_id="verifier-evil", meta=forged)
    await client.close()
    agent.services["verifier-evil"].status = "passing"
    with tempfile.TemporaryDirectory() as folder:
        server, _ = await start_gateway(
            consul_url=agent.url, verifier_key=VERIFIER_KEY, state_file=str(Path(folder) / "gateway.sqlite3")
        )
        try:
            auditor = server.app[api.STATE].auditor
            assert auditor is not None  # audits are on with no verifier listed: they come from Consul
            digest = await asyncio.to_thread(file_sha256, bundled_model_path())
            await wait_until(lambda: auditor.verifiers.url_for(digest) == verifier_url)
            warning = "ignoring infercdn-verifier verifier-evil"
            await wait_until(lambda: any(warning in r.message for r in caplog.records))
        finally:
            await server.close()
    await verifier.close()
    assert verifier_service_id(verifier_url) not in agent.services  # it left Consul on its way out
    await agent.stop()
