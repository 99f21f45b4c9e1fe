"""Discovery through Consul: a stand-in agent here (see consul_standin.py), a real one where installed."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bench.servers import free_port, running
from gateway import api
from gateway.app import create_app
from gateway.config import GatewayConfig
from gateway.consul_watch import ConsulWatch
from gateway.enrollment_store import EnrollmentStore
from gateway.enrollments import Enrollments
from routing.advertise import AddressPolicy
from routing.announce import Hardware, Registration
from routing.balancer import Balancer
from routing.consul_client import consul_client, next_index
from routing.consul_wire import LIFETIME_S, registration_to_meta
from routing.discovery import Remove, Upsert
from routing.enrollment_decision import KV_PREFIX, Decision, seal
from routing.fleet import Fleet
from routing.identity import Identity
from routing.key_handover import hand_over
from routing.quantization import Quantization
from tests.conftest import MODEL
from tests.gateway.consul_standin import ConsulStandIn
from tests.gateway.standin import MODEL as STANDIN_MODEL
from tests.gateway.standin import OFFER, StandIn
from tests.gateway.test_registry import TOKEN, key_of
from tests.waiting import wait_until

SERVICE = "infercdn-worker"


@pytest.fixture
async def consul_agent() -> AsyncIterator[ConsulStandIn]:
    agent = await ConsulStandIn().start()
    yield agent
    await agent.stop()


async def start_gateway(gateways: list[TestServer], consul_url: str, port: int = 0, **settings: object) -> str:
    settings = {"state_file": ":memory:", **settings}
    config = GatewayConfig(join_token=TOKEN, consul_url=consul_url, **settings)  # type: ignore[arg-type]
    server = TestServer(create_app(config, rng=random.Random(5)), host="127.0.0.1", port=port)
    await server.start_server()
    gateways.append(server)
    return str(server.make_url("")).rstrip("/")


async def fleet_ids(session: aiohttp.ClientSession, gw: str) -> list[str]:
    async with session.get(f"{gw}/admin/v1/fleet") as resp:
        return sorted(w["id"] for w in (await resp.json())["workers"])


def gateway_key(server: TestServer) -> str:
    registry = server.app[api.STATE].registry
    assert registry is not None
    return registry.minter.public_text


async def register_service(consul_url: str, worker_id: str, url: str, *, token: str = TOKEN, ttl: str = "30s") -> None:
    """What a worker's ConsulAnnouncer does, done by hand for a stand-in upstream."""
    registration = Registration(worker_id, url, "eu", "llama.cpp", Hardware(cpu="test", cores=2), 1, (OFFER,))
    client = consul_client(consul_url)
    try:
        await client.agent.service.register(
            SERVICE,
            service_id=worker_id,
            meta=registration_to_meta(registration, key_of(worker_id), token, time.time()),
            check={"TTL": ttl, "DeregisterCriticalServiceAfter": "1m"},
        )
        await client.agent.check.ttl_pass(f"service:{worker_id}")
    finally:
        await client.close()


def consul_worker_env(gateways: list[TestServer], key_file: Path) -> dict[str, str]:
    """A Consul worker trusts the gateways' keys it is given (it never registers with them)."""
    return {
        "INFERCDN_WORKER_JOIN_TOKEN": TOKEN,
        "INFERCDN_WORKER_CONSUL_HEARTBEAT_S": "0.3",
        "INFERCDN_WORKER_KEY_FILE": str(key_file),
        "INFERCDN_WORKER_GATEWAY_KEYS": ",".join(gateway_key(g) for g in gateways),
    }


async def test_a_real_worker_in_consul_is_seen_and_routed_by_two_gateways(
    consul_agent: ConsulStandIn, gateways: list[TestServer], session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    first = await start_gateway(gateways, consul_agent.url)
    second = await start_gateway(gateways, consul_agent.url)
    args = ("--threads", "1", "--consul-url", consul_agent.url, "--worker-id", "c-1")
    with running("edge_worker", *args, env=consul_worker_env(gateways, tmp_path / "worker.key")) as worker:
        for gw in (first, second):
            await wait_until(lambda gw=gw: fleet_ids(session, gw))  # type: ignore[misc]
            assert await fleet_ids(session, gw) == ["c-1"]
            body = {"model": MODEL, "prompt": "The capital of France is", "max_tokens": 2, "temperature": 0}
            async with session.post(f"{gw}/v1/completions", json=body) as resp:
                assert resp.status == 200, await resp.text()
                assert resp.headers["x-infercdn-worker"] == "c-1"
        service = consul_agent.services["c-1"]
        assert service.status == "passing" and "infercdn_sig" in service.meta
        # Its heartbeat keeps the TTL check passing well past one TTL (0.9 s here).
        await asyncio.sleep(2.0)
        assert consul_agent.services["c-1"].status == "passing"

        worker.process.terminate()
        assert await asyncio.to_thread(worker.process.wait, 30) == 0
        assert "c-1" not in consul_agent.services  # deregistered on the way out
        for gw in (first, second):
            await wait_until(lambda gw=gw: _no_workers(session, gw), timeout_s=5)  # type: ignore[misc]


ADMIN_KEY = "admin-key-shared-by-the-fleet"


async def admin(session: aiohttp.ClientSession, method: str, url: str) -> Any:
    async with session.request(method, url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as resp:
        assert resp.status in (200, 204), await resp.text()
        return await resp.json() if resp.status == 200 else None


async def states(session: aiohttp.ClientSession, gw: str) -> dict[str, str]:
    listed = await admin(session, "GET", f"{gw}/admin/v1/enrollments")
    return {row["worker_id"]: row["state"] for row in listed["enrollments"]}


async def routed(session: aiohttp.ClientSession, gw: str) -> list[str]:
    return sorted(w["id"] for w in (await admin(session, "GET", f"{gw}/admin/v1/fleet"))["workers"])


async def test_an_operators_decision_at_one_gateway_holds_at_every_gateway_on_the_consul(
    consul_agent: ConsulStandIn,
    gateways: list[TestServer],
    session: aiohttp.ClientSession,
    standins: list[StandIn],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Approvals and revocations were per gateway: a worker revoked at one went on serving through the others."""
    first, second = [
        await start_gateway(gateways, consul_agent.url, admin_key=ADMIN_KEY, enrollment="manual") for _ in range(2)
    ]
    upstream = await StandIn().start()
    standins.append(upstream)
    await register_service(consul_agent.url, "shared-1", upstream.url)
    for gw in (first, second):  # each saw it, proved by the join token, and holds it for an operator
        await wait_until(lambda gw=gw: _state_is(session, gw, "shared-1", "pending"))  # type: ignore[misc]
    await admin(session, "POST", f"{first}/admin/v1/enrollments/shared-1/approve")
    await wait_until(lambda: _routed_is(session, second, ["shared-1"]))  # approved there too, and let in at once
    assert await routed(session, first) == ["shared-1"]

    # Someone who can write to Consul (any Consul worker can) but holds no admin key cannot decide anything.
    forged = seal(Decision("shared-1", key_of("shared-1").public_key, "revoked", int(time.time())), b"0" * 32)
    client = consul_client(consul_agent.url)
    try:
        await client.kv.put(f"{KV_PREFIX}shared-1", forged)
        await client.kv.put(f"{KV_PREFIX}junk", b"\x00not json")
    finally:
        await client.close()

    def ignored() -> int:
        return sum("ignoring the enrollment decision at infercdn/enrollments/" in r.message for r in caplog.records)

    await wait_until(lambda: ignored() == 4)  # both values, at both gateways, once each
    for gw in (first, second):
        assert await routed(session, gw) == ["shared-1"] and (await states(session, gw))["shared-1"] == "approved"

    await admin(session, "POST", f"{second}/admin/v1/enrollments/shared-1/revoke")
    for gw in (first, second):
        await wait_until(lambda gw=gw: _routed_is(session, gw, []))  # type: ignore[misc]
        assert (await states(session, gw))["shared-1"] == "revoked"
    body = {"model": STANDIN_MODEL, "messages": [{"role": "user", "content": "hi"}]}
    async with session.post(f"{first}/v1/chat/completions", json=body) as resp:
        assert resp.status == 503


async def _state_is(session: aiohttp.ClientSession, gw: str, worker_id: str, state: str) -> bool:
    return (await states(session, gw)).get(worker_id) == state


async def _routed_is(session: aiohttp.ClientSession, gw: str, ids: list[str]) -> bool:
    return await routed(session, gw) == ids


async def test_a_worker_nobody_can_dial_finds_its_gateways_in_consul_and_serves_through_tunnels(
    consul_agent: ConsulStandIn, gateways: list[TestServer], session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Consul workers had to be dialable: a tunnelled one needed a --gateway list."""
    ports = [free_port(), free_port()]
    urls = [
        await start_gateway(gateways, consul_agent.url, port, public_url=f"http://127.0.0.1:{port}") for port in ports
    ]
    await wait_until(lambda: sum(s.name == "infercdn-gateway" for s in consul_agent.services.values()) == 2)
    nowhere = f"http://127.0.0.1:{free_port()}"  # it advertises where nobody listens: tunnels only
    args = ("--threads", "1", "--consul-url", consul_agent.url, "--worker-id", "nat-1", "--tunnel")
    key_file = tmp_path / "worker.key"
    with running(
        "edge_worker",
        *args,
        *("--advertise-url", nowhere, "--port", str(free_port())),
        env=consul_worker_env(gateways, key_file),
    ):
        for gw in urls:
            await wait_until(lambda gw=gw: _tunnelled(session, gw, "nat-1"))  # type: ignore[misc]
            body = {"model": MODEL, "prompt": "The capital of France is", "max_tokens": 2, "temperature": 0}
            async with session.post(f"{gw}/v1/completions", json=body) as resp:
                assert resp.status == 200, await resp.text()
                assert resp.headers["x-infercdn-worker"] == "nat-1"
        # It sends them no heartbeats, yet each gateway's signed receipt for what it served reaches it.
        await wait_until(lambda: _receipts_kept_are(key_file, 2))


async def _receipts_kept_are(key_file: Path, count: int) -> bool:
    return await asyncio.to_thread(_receipts_kept, key_file) == count


def _receipts_kept(key_file: Path) -> int:
    """What ``infercdn worker receipts`` counts, every signature checked (the real CLI, in a process)."""
    done = subprocess.run(
        [sys.executable, "-m", "edge_worker", "receipts", "--key-file", str(key_file), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        return -1
    answer = json.loads(done.stdout)
    assert answer["invalid"] == 0
    return int(answer["checked"])


async def _tunnelled(session: aiohttp.ClientSession, gw: str, worker_id: str) -> bool:
    async with session.get(f"{gw}/admin/v1/fleet") as resp:
        rows = [w for w in (await resp.json())["workers"] if w["id"] == worker_id]
    return bool(rows) and rows[0]["via"] == "tunnel" and rows[0]["health"] not in ("unreachable", "ejected")


async def _no_workers(session: aiohttp.ClientSession, gw: str) -> bool:
    return await fleet_ids(session, gw) == []


async def test_an_outage_keeps_the_last_fleet_and_the_gateway_catches_up(
    gateways: list[TestServer], session: aiohttp.ClientSession
) -> None:
    upstream = await StandIn().start()
    port = free_port()
    agent = await ConsulStandIn().start(port)
    try:
        gw = await start_gateway(gateways, agent.url)
        await register_service(agent.url, "s-1", upstream.url)
        await wait_until(lambda: fleet_ids(session, gw))

        await agent.stop()  # Consul goes away …
        await asyncio.sleep(0.5)
        chat = {"model": STANDIN_MODEL, "messages": [{"role": "user", "content": "hi"}]}
        async with session.post(f"{gw}/v1/chat/completions", json=chat) as resp:
            assert resp.status == 200  # … and routing goes on with the last known fleet
        assert await fleet_ids(session, gw) == ["s-1"]

        agent = await ConsulStandIn().start(port)  # back, empty (a dev agent keeps nothing)
        await register_service(agent.url, "s-2", upstream.url)
        await wait_until(lambda: _ids_are(session, gw, ["s-2"]), timeout_s=15)
    finally:
        await agent.stop()
        await upstream.stop()


async def _ids_are(session: aiohttp.ClientSession, gw: str, ids: list[str]) -> bool:
    return await fleet_ids(session, gw) == ids


async def test_lapsed_ttls_and_unsigned_services_are_not_routed(
    consul_agent: ConsulStandIn, gateways: list[TestServer], session: aiohttp.ClientSession
) -> None:
    gw = await start_gateway(gateways, consul_agent.url)
    await register_service(consul_agent.url, "forged", "http://127.0.0.1:9", token="not-the-fleet-token-0123")
    await register_service(consul_agent.url, "brief", "http://127.0.0.1:9", ttl="0.5s")
    await wait_until(lambda: fleet_ids(session, gw))
    assert await fleet_ids(session, gw) == ["brief"]  # the forged one is ignored
    await wait_until(lambda: _no_workers(session, gw), timeout_s=5)  # no pass within the TTL: critical
    assert consul_agent.services["brief"].status == "critical"


@pytest.mark.skipif(shutil.which("consul") is None, reason="needs a consul binary on PATH (none installable here)")
async def test_against_a_real_consul_agent(gateways: list[TestServer], session: aiohttp.ClientSession) -> None:
    """Run where Consul is installed: ``consul agent -dev`` on free ports, the same checks as above."""
    port = free_port()
    ports = [str(free_port()) for _ in range(3)]
    agent = await asyncio.create_subprocess_exec(
        "consul", "agent", "-dev", f"-http-port={port}", "-grpc-port=-1", "-dns-port=-1",
        "-serf-lan-port", ports[0], "-serf-wan-port", ports[1], "-server-port", ports[2],
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    upstream = await StandIn().start()
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                async with session.get(f"{url}/v1/status/leader") as resp:
                    if resp.status == 200 and (await resp.text()).strip('"'):
                        break
            except aiohttp.ClientError:
                pass
            assert time.monotonic() < deadline, "consul agent did not start"
            await asyncio.sleep(0.2)
        gw = await start_gateway(gateways, url)
        await register_service(url, "real-1", upstream.url)
        await register_service(url, "forged", upstream.url, token="not-the-fleet-token-0123")
        await wait_until(lambda: _ids_are(session, gw, ["real-1"]), timeout_s=15)
        chat = {"model": STANDIN_MODEL, "messages": [{"role": "user", "content": "hi"}]}
        async with session.post(f"{gw}/v1/chat/completions", json=chat) as resp:
            assert resp.status == 200
    finally:
        await upstream.stop()
        agent.terminate()
        await agent.wait()


async def test_an_unknown_model_is_warming_up_until_consul_has_answered(consul_agent, gateways, session) -> None:  # type: ignore[no-untyped-def]
    chat = {"model": "not-announced-yet", "messages": [{"role": "user", "content": "hi"}]}
    quick = {"heartbeat_interval_s": 0.1, "worker_ttl_s": 1.0}
    dead = await start_gateway(gateways, f"http://127.0.0.1:{free_port()}", **quick)  # no Consul there
    live = await start_gateway(gateways, consul_agent.url, **quick)

    async def status(gw: str) -> tuple[int, str]:
        async with session.post(f"{gw}/v1/chat/completions", json=chat) as resp:
            return resp.status, (await resp.json())["error"]["code"]

    async def missing() -> bool:
        return await status(live) == (404, "model_not_found")

    assert await status(live) == (503, "warming_up")
    # Consul answered (no such model) and registered workers had their heartbeat to come back: missing.
    await wait_until(missing, timeout_s=10)
    assert await status(dead) == (503, "warming_up")  # never heard from Consul: not known to be missing


async def watch_of(balancer: Balancer, bearer: str = "", **settings: object) -> ConsulWatch:
    client = consul_client("http://127.0.0.1:9")  # never called: answers are handed in
    await client.close()
    enrollments = Enrollments(await EnrollmentStore.open(":memory:"), manual=False, enrollments_per_minute=100)
    policy = AddressPolicy()
    return ConsulWatch(
        balancer, client, SERVICE, TOKEN, enrollments, bearer_for=lambda _: bearer, policy=policy, **settings
    )  # type: ignore[arg-type]


async def test_a_signed_entry_with_hostile_numbers_is_skipped_and_the_rest_applied() -> None:
    balancer = Balancer(Fleet(), random.Random(1))
    watch = await watch_of(balancer)
    hostile_offer = replace(OFFER, quantization=Quantization("Q8_0", float("inf"), "int8"))
    entries = []
    for worker_id, offer in (("hostile", hostile_offer), ("honest", OFFER)):
        reg = Registration(
            worker_id, "http://10.0.0.7:8081", "eu", "llama.cpp", Hardware(cpu="x", cores=2), 1, (offer,)
        )
        entries.append({"Service": {"ID": worker_id, "Meta": registration_to_meta(reg, key_of(worker_id), TOKEN, NOW)}})
    entries.append({"Service": "not a map"})
    await watch.apply(entries)  # signed, so only the bounds can refuse it
    assert [s.worker.id for s in balancer.fleet.workers()] == ["honest"]


NOW = time.time()


def signed_entry(
    worker_id: str,
    url: str = "http://10.0.0.7:8081",
    token: str = TOKEN,
    *,
    key: Identity | None = None,
    at: float = NOW,
    handover: str = "",
) -> dict[str, object]:
    reg = Registration(worker_id, url, "eu", "llama.cpp", Hardware(cpu="x", cores=2), 1, (OFFER,))
    meta = registration_to_meta(reg, key or key_of(worker_id), token, at, handover=handover)
    return {"Service": {"ID": worker_id, "Meta": meta}}


async def test_each_answer_becomes_the_changes_that_make_the_fleet_match_it() -> None:
    watch = await watch_of(Balancer(Fleet(), random.Random(1)), bearer="b")
    first = await watch.changes(
        [signed_entry("a"), signed_entry("b"), signed_entry("x", token="another-fleets-token-99")]
    )
    assert [(type(c).__name__, c.worker.id) for c in first if isinstance(c, Upsert)] == [
        ("Upsert", "a"),
        ("Upsert", "b"),
    ]
    assert all(isinstance(c, Upsert) and c.worker.source == "consul" and c.worker.bearer == "b" for c in first)
    second = await watch.changes([signed_entry("b", url="http://10.0.0.8:8081")])
    assert second[0] == Upsert(replace(first[1].worker, url="http://10.0.0.8:8081"), (OFFER,))  # type: ignore[union-attr]
    assert second[1:] == [Remove("a")]
    assert await watch.changes([]) == [Remove("b")]


async def test_consul_entries_are_bound_to_their_key_and_expire() -> None:
    """A token holder re-registered another worker's service id with its own URL; an old capture worked forever."""
    watch = await watch_of(Balancer(Fleet(), random.Random(1)))
    assert [c.worker.id for c in await watch.changes([signed_entry("victim")]) if isinstance(c, Upsert)] == ["victim"]
    hijack = signed_entry("victim", url="http://10.6.6.6:8081", key=Identity.generate())
    old = signed_entry("old", at=NOW - 2 * LIFETIME_S)
    future = signed_entry("future", at=NOW + 3600)
    meta = signed_entry("forged-meta")["Service"]["Meta"]  # type: ignore[index]
    forged = {"Service": {"ID": "forged-meta", "Meta": {**meta, "infercdn_reg_0": meta["infercdn_reg_0"][::-1]}}}
    ssrf = signed_entry("ssrf", url="http://169.254.169.254")
    changes = await watch.changes([hijack, old, future, forged, ssrf])
    assert changes == [Remove("victim")]  # nothing accepted, and the real victim is not listed in this answer


async def test_a_rotated_key_takes_over_its_id_in_consul_with_the_old_keys_handover() -> None:
    watch = await watch_of(Balancer(Fleet(), random.Random(1)))
    old, new, attacker = key_of("rotating"), Identity.generate(), Identity.generate()
    assert [type(c).__name__ for c in await watch.changes([signed_entry("rotating", key=old)])] == ["Upsert"]
    forged = signed_entry("rotating", key=new, handover=hand_over(attacker, new.public_key).text)
    assert await watch.changes([forged]) == [Remove("rotating")]  # refused: the id is bound to the old key
    rotated = signed_entry(
        "rotating", url="http://10.0.0.9:8081", key=new, handover=hand_over(old, new.public_key).text
    )
    (change,) = await watch.changes([rotated])
    assert isinstance(change, Upsert) and change.worker.url == "http://10.0.0.9:8081"
    assert await watch.changes([signed_entry("rotating", key=old)]) == [Remove("rotating")]  # the old key: refused


def test_the_blocking_query_index_starts_over_when_consul_goes_backwards() -> None:
    assert next_index(None, "7") == "7"
    assert next_index("7", "9") == "9"
    assert next_index("9", "9") == "9"
    assert next_index("9", "3") is None  # Consul restarted: its index went backwards
    assert next_index("9", "garbage") is None
