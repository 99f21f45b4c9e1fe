"""Per-key token budgets through a real gateway and worker: 429 once spent, and still spent after a restart."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from bench.servers import Server
from gateway.keys import KeyStore, create_key
from routing.budget import Budget
from routing.openai_requests import parse_completion_request
from routing.ratelimit import Limits
from routing.suitability import estimate_prompt_tokens
from tests.conftest import MODEL
from tests.gateway.test_registry import start_gateway

DAY_BUDGET = 200


async def ask(session: aiohttp.ClientSession, url: str, key: str) -> tuple[int, dict[str, str], dict[str, object]]:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8}
    async with session.post(f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}) as r:
        return r.status, dict(r.headers), await r.json()


def day_budget_key(worker: Server, tmp_path: Path) -> tuple[str, dict[str, object]]:
    """A key with a day's budget of DAY_BUDGET tokens, and settings for a gateway in front of ``worker``."""
    store = KeyStore()
    key, _ = create_key(store, "capped", Limits(0, 0), Budget(tokens_per_day=DAY_BUDGET))
    store.save(tmp_path / "keys.json")
    settings: dict[str, object] = {
        "workers": (worker.url,),
        "api_keys_file": str(tmp_path / "keys.json"),
        "state_file": str(tmp_path / "gateway.sqlite3"),  # the ledger goes beside it
    }
    return key, settings


async def test_a_spent_day_budget_is_refused_with_429_and_stays_spent_after_a_restart(
    worker: Server, tmp_path: Path
) -> None:
    key, settings = day_budget_key(worker, tmp_path)
    remaining: list[int] = []
    used = most = 0
    server, url = await start_gateway(**settings)
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(DAY_BUDGET):  # each request costs well over one token: it ends long before
                status, headers, answer = await ask(session, url, key)
                if status != 200:
                    break
                remaining.append(int(headers["x-budget-remaining-tokens-day"]))
                usage = answer["usage"]
                assert isinstance(usage, dict)
                cost = usage["prompt_tokens"] + usage["completion_tokens"]
                used, most = used + cost, max(most, cost)
    finally:
        await server.close()
    assert status == 429, answer
    error = answer["error"]
    assert isinstance(error, dict) and error["code"] == "insufficient_quota"
    assert 0 < int(headers["Retry-After"]) <= 86400 and headers["x-budget-limit-tokens-day"] == str(DAY_BUDGET)
    assert len(remaining) >= 2 and remaining == sorted(remaining, reverse=True)
    # Refused once the next request might not fit: the key spent its budget to within one request
    # (the gateway reserves its prompt estimate and max_tokens; a chat template's tokens it cannot see).
    assert DAY_BUDGET - most < used < DAY_BUDGET + most
    assert int(headers["x-budget-remaining-tokens-day"]) == max(0, DAY_BUDGET - used)

    server, url = await start_gateway(**settings)  # the ledger remembers what the key spent today
    try:
        async with aiohttp.ClientSession() as session:
            status, headers, _ = await ask(session, url, key)
    finally:
        await server.close()
    assert status == 429 and int(headers["x-budget-remaining-tokens-day"]) == max(0, DAY_BUDGET - used)


async def test_a_request_without_max_tokens_generates_only_what_the_key_has_left(
    worker: Server, tmp_path: Path
) -> None:
    key, settings = day_budget_key(worker, tmp_path)
    body = {"model": MODEL, "prompt": "1, 2, 3, 4, 5, 6,", "temperature": 0}  # counts on for thousands of tokens
    headers = {"Authorization": f"Bearer {key}"}
    server, url = await start_gateway(**settings)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{url}/v1/completions", json=body, headers=headers) as resp:
                assert resp.status == 200
                answer = await resp.json()
            async with session.post(f"{url}/v1/completions", json=body, headers=headers) as resp:
                refused = resp.status
    finally:
        await server.close()
    assert answer["choices"][0]["finish_reason"] == "length"
    # Capped at what was left after the gateway's estimate of the prompt (the worker counts a few more:
    # what the budget can be overshot by).
    estimate = estimate_prompt_tokens(parse_completion_request(body))
    assert answer["usage"]["completion_tokens"] == DAY_BUDGET - estimate
    assert refused == 429
