"""Client API keys, per-key limits and the admin key, on a real gateway in front of a stand-in."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.app import create_app
from gateway.cli import main
from gateway.config import GatewayConfig
from gateway.fleet_table import run_fleet_command
from gateway.keys import KeyStore
from routing.settings import ConfigError
from tests.gateway.standin import MODEL, OK_BODY, StandIn

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
ADMIN = "admin-key-for-tests-0123456789"


@pytest.fixture
async def upstream() -> AsyncIterator[StandIn]:
    standin = await StandIn().start()
    yield standin
    await standin.stop()


@pytest.fixture
async def gateway_with(upstream: StandIn) -> AsyncIterator[object]:
    servers: list[TestServer] = []

    async def start(**settings: object) -> str:
        config = GatewayConfig(workers=(upstream.url,), **settings)  # type: ignore[arg-type]
        config.check()
        server = TestServer(create_app(config, rng=random.Random(1)), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("")).rstrip("/")

    yield start
    for s in servers:
        await s.close()


async def answer_15_tokens(request: web.Request) -> web.StreamResponse:
    usage = {"prompt_tokens": 5, "completion_tokens": 10, "total_tokens": 15}
    return web.json_response({**OK_BODY, "usage": usage})


def create_key(keys_file: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    assert main(["keys", "create", "--keys-file", str(keys_file), "--name", "tests", *extra]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("icdn-")
    return key


async def test_keys_are_stored_hashed_and_checked(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    gateway_with,
    session,
    caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
) -> None:
    caplog.set_level(logging.DEBUG)
    keys_file = tmp_path / "keys.json"
    key = create_key(keys_file, capsys)
    stored = keys_file.read_text()
    assert key not in stored and key.split("-", 2)[2] not in stored
    assert oct(keys_file.stat().st_mode & 0o777) == "0o600"
    gw = await gateway_with(api_keys_file=str(keys_file))

    async with session.post(f"{gw}/v1/chat/completions", json=CHAT) as resp:
        assert resp.status == 401
        error = (await resp.json())["error"]
        assert error["code"] == "invalid_api_key" and "didn't provide an API key" in error["message"]
    async with session.post(
        f"{gw}/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}x"}
    ) as resp:
        assert resp.status == 401
    async with session.get(f"{gw}/v1/models", headers={"Authorization": f"Bearer {key}"}) as resp:
        assert resp.status == 200
    async with session.get(f"{gw}/health") as resp:
        assert resp.status == 200  # load balancers' checks need no key

    good = openai.AsyncOpenAI(base_url=f"{gw}/v1", api_key=key, max_retries=0)
    reply = await good.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "hi"
    bad = openai.AsyncOpenAI(base_url=f"{gw}/v1", api_key="icdn-00000000-nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await bad.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert key not in caplog.text

    assert main(["keys", "list", "--keys-file", str(keys_file)]) == 0
    listing = capsys.readouterr().out
    assert "tests" in listing and key not in listing


async def test_a_single_key_from_the_environment_works_too(gateway_with, session) -> None:  # type: ignore[no-untyped-def]
    gw = await gateway_with(api_key="just-one-key-for-this-gateway")
    async with session.post(f"{gw}/v1/chat/completions", json=CHAT) as resp:
        assert resp.status == 401
    headers = {"Authorization": "Bearer just-one-key-for-this-gateway"}
    async with session.post(f"{gw}/v1/chat/completions", json=CHAT, headers=headers) as resp:
        assert resp.status == 200


async def test_per_key_request_and_token_limits_give_429(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    gateway_with,
    session,
    upstream: StandIn,  # type: ignore[no-untyped-def]
) -> None:
    keys_file = tmp_path / "keys.json"
    slow = create_key(keys_file, capsys, "--requests-per-minute", "2")
    frugal = create_key(keys_file, capsys, "--tokens-per-minute", "100")
    gw = await gateway_with(api_keys_file=str(keys_file))

    statuses = []
    for _ in range(3):
        async with session.post(
            f"{gw}/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {slow}"}
        ) as resp:
            statuses.append(resp.status)
            if resp.status == 429:
                assert int(resp.headers["Retry-After"]) >= 1
                assert resp.headers["x-ratelimit-limit-requests"] == "2"
                assert resp.headers["x-ratelimit-remaining-requests"] == "0"
                assert (await resp.json())["error"]["code"] == "rate_limit_exceeded"
    assert statuses == [200, 200, 429]
    assert upstream.hits == 2  # the refused one never reached a worker

    big = {**CHAT, "max_tokens": 500}
    async with session.post(f"{gw}/v1/chat/completions", json=big, headers={"Authorization": f"Bearer {frugal}"}) as r:
        assert r.status == 429
        assert "tokens per minute" in (await r.json())["error"]["message"]
    async with session.post(f"{gw}/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {frugal}"}) as r:
        assert r.status == 200  # the other key's limits are its own


async def gateway_with_a_300_tokens_key(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    gateway_with,
    upstream: StandIn,  # type: ignore[no-untyped-def]
) -> tuple[str, str]:
    """A key of 300 tokens a minute, and a gateway in front of a worker that says each answer used 15."""
    upstream.behaviour = answer_15_tokens
    keys_file = tmp_path / "keys.json"
    key = create_key(keys_file, capsys, "--tokens-per-minute", "300")
    return key, await gateway_with(api_keys_file=str(keys_file))


async def test_token_limits_count_what_workers_report_not_the_estimate(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    gateway_with,
    session,
    upstream: StandIn,  # type: ignore[no-untyped-def]
) -> None:
    key, gw = await gateway_with_a_300_tokens_key(tmp_path, capsys, gateway_with, upstream)
    asks_a_lot = {**CHAT, "max_tokens": 200}  # reserves ~200 tokens, uses 15
    for _ in range(4):
        async with session.post(
            f"{gw}/v1/chat/completions", json=asks_a_lot, headers={"Authorization": f"Bearer {key}"}
        ) as resp:
            assert resp.status == 200  # without settling, the second would be over 300/min
    async with session.post(f"{gw}/v1/chat/completions", json=CHAT) as resp:
        assert resp.status == 401
    async with session.get(f"{gw}/metrics") as resp:
        text = await resp.text()
    assert 'infercdn_gateway_requests_total{model="unknown",outcome="rejected",status="401"} 1.0' in text


async def test_an_answer_without_max_tokens_may_not_outgrow_a_minutes_tokens(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    gateway_with,
    session,
    upstream: StandIn,  # type: ignore[no-untyped-def]
) -> None:
    key, gw = await gateway_with_a_300_tokens_key(tmp_path, capsys, gateway_with, upstream)
    unbounded = {"model": MODEL, "messages": [{"role": "user", "content": "Write a long essay."}]}
    async with session.post(
        f"{gw}/v1/chat/completions", json=unbounded, headers={"Authorization": f"Bearer {key}"}
    ) as resp:
        assert resp.status == 200
    sent = json.loads(upstream.seen_bodies[-1])
    assert 250 < sent["max_tokens"] < 300  # a minute's tokens less the prompt's estimate
    async with session.post(f"{gw}/v1/chat/completions", json={**unbounded, "max_tokens": 40}) as resp:
        assert resp.status == 401  # (no key) and a bounded request is forwarded as it came:
    async with session.post(
        f"{gw}/v1/chat/completions", json={**unbounded, "max_tokens": 40}, headers={"Authorization": f"Bearer {key}"}
    ) as resp:
        assert resp.status == 200
    assert json.loads(upstream.seen_bodies[-1])["max_tokens"] == 40


def stream_without_usage(events: int) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A worker that streams ``events`` tokens whatever max_tokens says, and reports no usage."""

    async def behaviour(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        chunk = {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "ab"}}]}
        for _ in range(events):
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    return behaviour


async def test_an_answer_without_usage_costs_what_the_gateway_relayed(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    gateway_with,
    session,
    upstream: StandIn,  # type: ignore[no-untyped-def]
) -> None:
    """A stream with no usage was charged its reservation: 8,000 chunks went through a 1,000 tokens/min key."""
    upstream.behaviour = stream_without_usage(600)
    keys_file = tmp_path / "keys.json"
    key = create_key(keys_file, capsys, "--tokens-per-minute", "1000")
    gw = await gateway_with(api_keys_file=str(keys_file))
    auth = {"Authorization": f"Bearer {key}"}
    unbounded = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    async with session.post(f"{gw}/v1/chat/completions", json=unbounded, headers=auth) as resp:
        assert resp.status == 200  # it reserved a usual answer's 256 tokens (and may run to ~1,000)
        assert (await resp.read()).count(b'"content"') == 600
    async with session.post(f"{gw}/v1/chat/completions", json={**CHAT, "max_tokens": 500}, headers=auth) as resp:
        assert resp.status == 429  # charged the 600 tokens relayed: ~400 left, not ~744
        assert 395 <= int(resp.headers["x-ratelimit-remaining-tokens"]) <= 410


async def test_a_stream_past_max_tokens_is_cut_with_an_error_event(
    gateway_with,
    session,
    upstream: StandIn,  # type: ignore[no-untyped-def]
) -> None:
    upstream.behaviour = stream_without_usage(200)
    gw = await gateway_with()
    async with session.post(f"{gw}/v1/chat/completions", json={**CHAT, "stream": True}) as resp:
        assert resp.status == 200
        events = (await resp.read()).split(b"\n\n")
    assert sum(b'"content"' in e for e in events) == 8  # max_tokens
    assert b"more tokens than max_tokens" in events[-3] and events[-2] == b"data: [DONE]"


async def claim_10_15_tokens(request: web.Request) -> web.StreamResponse:
    usage = {"prompt_tokens": 10**15, "completion_tokens": 10**15, "total_tokens": 2 * 10**15}
    return web.json_response({**OK_BODY, "usage": usage})


async def test_a_worker_cannot_lock_a_client_out_by_claiming_tokens_it_did_not_serve(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    gateway_with,
    session,
    upstream: StandIn,  # type: ignore[no-untyped-def]
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A worker reporting completion_tokens: 10**15 locked an honest client out for 600 million seconds."""
    upstream.behaviour = claim_10_15_tokens
    keys_file = tmp_path / "keys.json"
    key = create_key(keys_file, capsys, "--tokens-per-minute", "5000")
    gw = await gateway_with(api_keys_file=str(keys_file))
    auth = {"Authorization": f"Bearer {key}"}
    for _ in range(3):  # each is charged at most its body's bytes + a template's tokens + 8: the next still fits
        async with session.post(f"{gw}/v1/chat/completions", json=CHAT, headers=auth) as resp:
            assert resp.status == 200
            assert (await resp.json())["usage"]["completion_tokens"] == 10**15  # the client's answer is untouched
    async with session.get(f"{gw}/metrics") as resp:
        assert "infercdn_gateway_usage_overclaims_total 3.0" in await resp.text()
    assert sum("claimed more tokens than request" in r.message for r in caplog.records) == 3


async def test_the_admin_key_guards_the_fleet_endpoint(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    gateway_with,
    session,  # type: ignore[no-untyped-def]
) -> None:
    open_gw = await gateway_with()
    async with session.get(f"{open_gw}/admin/v1/fleet") as resp:
        assert resp.status == 200  # an open loopback gateway (infercdn up)

    keys_file = tmp_path / "keys.json"
    key = create_key(keys_file, capsys)
    keyed = await gateway_with(api_keys_file=str(keys_file))
    async with session.get(f"{keyed}/admin/v1/fleet", headers={"Authorization": f"Bearer {key}"}) as resp:
        assert resp.status == 403  # a client key is not an admin key, and there is none

    guarded = await gateway_with(api_keys_file=str(keys_file), admin_key=ADMIN)
    async with session.get(f"{guarded}/admin/v1/fleet") as resp:
        assert resp.status == 401
    async with session.get(f"{guarded}/admin/v1/fleet", headers={"Authorization": f"Bearer {ADMIN}"}) as resp:
        assert resp.status == 200
        (row,) = (await resp.json())["workers"]
        assert row["models"] == [f"{MODEL}@Q8_0"] and row["source"] == "static"

    # infercdn fleet, against the same endpoint (it blocks: run it off the loop).
    assert await asyncio.to_thread(run_fleet_command, guarded, ADMIN, as_json=False) == 0
    table = capsys.readouterr().out
    assert "WORKER" in table and f"{MODEL}@Q8_0" in table and "1 worker(s)" in table
    assert await asyncio.to_thread(run_fleet_command, guarded, "wrong-admin-key-0123456789", as_json=True) == 1
    assert "401" in capsys.readouterr().err
    assert await asyncio.to_thread(run_fleet_command, guarded, ADMIN, as_json=True) == 0
    assert json.loads(capsys.readouterr().out)["workers"][0]["health"] in ("healthy", "probation")


def test_an_open_gateway_off_loopback_is_refused_unless_asked_for() -> None:
    with pytest.raises(ConfigError, match="no API keys"):
        GatewayConfig(host="0.0.0.0").check()
    GatewayConfig(host="0.0.0.0", allow_open=True).check()
    GatewayConfig(host="0.0.0.0", api_key="some-key").check()


def test_secrets_stay_out_of_reprs() -> None:
    config = GatewayConfig(join_token="join-token-0123456789abc", api_key="k" * 20, admin_key="a" * 20)
    assert "join-token-0123456789abc" not in repr(config) and "k" * 20 not in repr(config)


def test_keys_create_sets_day_and_month_budgets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys_file = tmp_path / "keys.json"
    create_key(keys_file, capsys, "--tokens-per-day", "500", "--tokens-per-month", "9000")
    (record,) = KeyStore.load(keys_file).records()
    assert (record.budget.tokens_per_day, record.budget.tokens_per_month) == (500, 9000)
    assert main(["keys", "list", "--keys-file", str(keys_file)]) == 0
    assert "per day=500  per month=9000" in capsys.readouterr().out
    assert main(["keys", "create", "--keys-file", str(keys_file), "--tokens-per-day", "-1"]) == 2
