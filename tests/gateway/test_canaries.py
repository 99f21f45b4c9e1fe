"""Canaries, for real: a worker whose clients only sample is caught by the gateway's own greedy requests.

Real registered llama.cpp workers, a real verifier and a real gateway on loopback (as in test_audits.py).
Clients' answers are never audited here (audit rates 0) and all sample (temperature 1), so every greedy
check is a canary's. The cheat serves SmolLM2 requantized to Q2_K while claiming the bundled Q4_1 file.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway import api
from gateway.fleet_table import run_fleet_command
from routing.identity import load_or_create
from tests.gateway.test_audits import VERIFIER_KEY, ask, audits, lie_about_weights, start_verifier
from tests.gateway.test_registry import registered_worker, start_gateway
from tests.metrics_text import sample
from tests.waiting import wait_until


async def canary_gateway(verifier: str, state_file: Path) -> tuple[Any, str]:
    return await start_gateway(
        verifiers=(verifier,),
        verifier_key=VERIFIER_KEY,
        audit_probation_rate=0.0,
        audit_trusted_rate=0.0,
        audit_suspect_rate=0.0,
        canary_share=0.25,  # (0.5% by default: a test cannot wait for 400 requests per canary)
        state_file=str(state_file),
    )


async def test_a_cheat_whose_clients_only_sample_is_convicted_by_canaries(
    session: aiohttp.ClientSession, cheaper_models: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    verifier, verifier_url = await start_verifier()
    with tempfile.TemporaryDirectory() as folder:
        cheat_key = Path(folder) / "cheat.key"
        load_or_create(cheat_key)
        server, gw = await canary_gateway(verifier_url, Path(folder) / "gateway.sqlite3")
        try:
            with (
                registered_worker(gw, "honest"),
                registered_worker(gw, "cheat", key_file=cheat_key, model=cheaper_models["Q2_K"]),
            ):
                await lie_about_weights(session, gw, server, "cheat", cheat_key)
                for i in range(160):
                    await ask(session, gw, i, temperature=1.0, seed=i)
                    if (await audits(session, gw)).get("cheat", {}).get("standing") == "convicted":
                        break
                found = await audits(session, gw)
                assert found["cheat"]["standing"] == "convicted", found
                assert all("nats off the reference" in e["reason"] for e in found["cheat"]["evidence"])
                sent = await asyncio.to_thread(sample, gw, "infercdn_gateway_canaries_total", outcome="sent")
                checks = sum(row["checks"] for row in found.values())
                assert 2 <= checks <= sent  # every check was a canary's: clients' answers are not drawn here
                assert all(row["recent_greedy_checks"] == row["checks"] for row in found.values())
                assert found.get("honest", {}).get("flags", 0) == 0
                # Convicted: clients' requests go to the honest worker only; canaries to it as well.
                assert {await ask(session, gw, i, temperature=1.0) for i in range(4)} == {"honest"}
                # Canaries are booked to their own key in the ledger, apart from clients' usage.
                async with session.get(f"{gw}/admin/v1/usage", params={"by": "key"}) as resp:
                    keys = {row["group"]: row for row in (await resp.json())["rows"]}
                assert keys["canary"]["requests"] >= 2
                auditor = server.app[api.STATE].auditor
                assert auditor is not None
                await wait_until(lambda: auditor.idle)
                # What an operator reads: `infercdn fleet audits`, with the greedy checks canaries topped up.
                assert await asyncio.to_thread(run_fleet_command, gw, "", as_json=False, action="audits") == 0
                table = capsys.readouterr().out.splitlines()
                assert table[0].split()[:5] == ["WORKER", "STANDING", "CHECKS", "GREEDY", "FLAGS"]
                cheat_row = next(line.split() for line in table if line.startswith("cheat "))
                assert cheat_row[1] == "convicted" and cheat_row[2] == cheat_row[3]  # all of its checks greedy
        finally:
            await server.close()
    await verifier.close()
