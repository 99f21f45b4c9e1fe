"""The embedded registry with real workers and signed messages on loopback."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import msgpack
import pytest
from aiohttp.test_utils import TestServer

from bench.servers import Server, free_port, running
from gateway import api
from gateway.app import create_app
from gateway.config import GatewayConfig
from routing.announce import CONTENT_TYPE, REGISTER_PATH, Hardware, Heartbeat, Registration, heartbeat_path, pack
from routing.identity import Identity
from routing.signing import Signer
from tests.conftest import MODEL
from tests.gateway.standin import OFFER
from tests.waiting import wait_until

TOKEN = "join-token-for-tests-0123456789"


async def start_gateway(
    port: int = 0, clock: Callable[[], float] | None = None, **settings: object
) -> tuple[TestServer, str]:
    settings = {"state_file": ":memory:", **settings}
    config = GatewayConfig(join_token=TOKEN, heartbeat_interval_s=0.3, worker_ttl_s=1.5, **settings)  # type: ignore[arg-type]
    server = TestServer(create_app(config, rng=random.Random(3), clock=clock), host="127.0.0.1", port=port)
    await server.start_server()
    return server, str(server.make_url("")).rstrip("/")


async def fleet_ids(session: aiohttp.ClientSession, gw: str) -> list[str]:
    async with session.get(f"{gw}/admin/v1/fleet") as resp:  # open loopback gateway: admin open
        assert resp.status == 200
        return [w["id"] for w in (await resp.json())["workers"]]


@contextmanager
def registered_worker(
    gateway_url: str,
    worker_id: str,
    key_file: Path | None = None,
    model: Path | None = None,
    extra: tuple[str, ...] = (),  # more of the worker's flags
    timeout_s: float = 120,
) -> Iterator[Server]:
    with tempfile.TemporaryDirectory() as state:
        key = str(key_file or Path(state) / "worker.key")
        with running(
            "edge_worker",
            *("--threads", "1", "--gateway", gateway_url, "--worker-id", worker_id, "--region", "eu"),
            *(("--model", str(model)) if model is not None else ()),
            *extra,
            env={"INFERCDN_WORKER_JOIN_TOKEN": TOKEN, "INFERCDN_WORKER_KEY_FILE": key},
            timeout_s=timeout_s,
        ) as server:
            yield server


def registration(worker_id: str = "w1", url: str = "http://127.0.0.1:9") -> Registration:
    return Registration(worker_id, url, "eu", "llama.cpp", Hardware(cpu="test", cores=2), 1, (OFFER,))


# One key per worker id in these tests, as each real worker has its own.
KEYS: dict[str, Identity] = {}


def key_of(worker_id: str) -> Identity:
    return KEYS.setdefault(worker_id, Identity.generate())


async def post_signed(
    session: aiohttp.ClientSession,
    gw: str,
    path: str,
    body: bytes,
    token: str = TOKEN,
    *,
    at: float | None = None,
    worker_id: str | None = None,
    key: Identity | None = None,
    method: str = "POST",
    handover: str = "",
) -> tuple[int, dict[str, str]]:
    """A control message as a worker sends it: signed by ``key`` (default: the id's own), enrolling with ``token``
    (and carrying ``handover`` from a previous key, as after a rotation)."""
    worker_id = worker_id or _id_in(body, path)
    signer = Signer(key or key_of(worker_id), worker_id, token, handover=handover)
    signed = signer.headers(method, path, body, at or time.time(), enroll=path == REGISTER_PATH)
    headers = {"Content-Type": CONTENT_TYPE, **signed}
    async with session.request(method, gw + path, data=body, headers=headers) as resp:
        return resp.status, headers


def _id_in(body: bytes, path: str) -> str:
    if body:
        return str(msgpack.unpackb(body)["worker_id"])
    return path.removeprefix(REGISTER_PATH + "/").split("/")[0]


async def test_a_real_worker_registers_serves_and_cannot_be_used_directly(session: aiohttp.ClientSession) -> None:
    gateway, gw = await start_gateway()
    try:
        with registered_worker(gw, "edge-1") as worker:
            await wait_until(lambda: fleet_ids(session, gw))
            async with session.get(f"{gw}/admin/v1/fleet") as resp:
                (row,) = (await resp.json())["workers"]
            assert row["id"] == "edge-1" and row["region"] == "eu" and row["source"] == "registry"
            assert row["runtime"] == "llama.cpp" and row["hardware"] and row["models"] == [f"{MODEL}@Q4_1"]

            body = {"model": MODEL, "prompt": "The capital of France is", "max_tokens": 2, "temperature": 0}
            async with session.post(f"{gw}/v1/completions", json=body) as resp:
                assert resp.status == 200, await resp.text()
                assert "Paris" in (await resp.json())["choices"][0]["text"]
                assert resp.headers["x-infercdn-worker"] == "edge-1"

            # Straight to the worker, without the gateway's credential: refused.
            async with session.post(f"{worker.url}/v1/completions", json=body) as resp:
                assert resp.status == 401
                assert (await resp.json())["error"]["code"] == "invalid_api_key"
            async with session.post(
                f"{worker.url}/v1/completions", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
            ) as resp:
                assert resp.status == 401  # not even with the join token itself: only a gateway's token for it
            async with session.get(f"{worker.url}/health") as resp:
                assert resp.status == 200  # probes and scrapers may look

            # Heartbeats carry its load.
            await wait_until(lambda: _heartbeat_seen(session, gw))
    finally:
        await gateway.close()


async def _heartbeat_seen(session: aiohttp.ClientSession, gw: str) -> bool:
    async with session.get(f"{gw}/admin/v1/fleet") as resp:
        (row,) = (await resp.json())["workers"]
        return row["last_heartbeat_s"] is not None and row["last_heartbeat_s"] < 1.0


async def test_a_silent_worker_expires_after_the_ttl_of_its_last_heartbeat(session: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    gateway, gw = await start_gateway(clock=clock)  # worker_ttl_s=1.5
    registry = gateway.app[api.STATE].registry
    try:
        assert (await post_signed(session, gw, REGISTER_PATH, pack(registration("quiet"))))[0] == 200
        clock.now = 1.0
        beat = pack(Heartbeat("quiet", in_flight=2, queued=1))
        assert (await post_signed(session, gw, heartbeat_path("quiet"), beat))[0] == 204
        clock.now = 2.4  # 2.4 s after registering, 1.4 s after the heartbeat
        assert registry.expire(clock.now) == []
        assert registry.last_heartbeat_age_s("quiet") == pytest.approx(1.4)
        assert await fleet_ids(session, gw) == ["quiet"]
        clock.now = 2.6
        assert registry.expire(clock.now) == ["quiet"]
        assert await fleet_ids(session, gw) == []
        # Its next heartbeat is answered 404: the worker knows to register again.
        assert (await post_signed(session, gw, heartbeat_path("quiet"), beat))[0] == 404
    finally:
        await gateway.close()


class FakeClock:
    """The registry's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _empty(session: aiohttp.ClientSession, gw: str) -> bool:
    return await fleet_ids(session, gw) == []


async def test_unsigned_forged_stale_and_replayed_messages_are_refused(
    session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gateway, gw = await start_gateway()
    body = pack(registration("intruder"))
    try:
        unsigned = {"Content-Type": CONTENT_TYPE}
        async with session.post(gw + REGISTER_PATH, data=body, headers=unsigned) as resp:
            assert resp.status == 401
            assert set((await resp.json())["error"]) == {"message", "type", "param", "code"}
        assert (await post_signed(session, gw, REGISTER_PATH, body, token="a-different-token-0123456789"))[0] == 401
        assert (await post_signed(session, gw, REGISTER_PATH, body, at=time.time() - 120))[0] == 401
        assert await fleet_ids(session, gw) == []

        status, headers = await post_signed(session, gw, REGISTER_PATH, pack(registration("honest")))
        assert status == 200
        async with session.post(gw + REGISTER_PATH, data=pack(registration("honest")), headers=headers) as resp:
            assert resp.status == 401
            assert (await resp.json())["error"]["code"] == "replayed_message"
        # A valid signature over other bytes is a forgery too.
        tampered = pack(registration("honest", url="http://evil.example:80"))
        async with session.post(gw + REGISTER_PATH, data=tampered, headers=headers) as resp:
            assert resp.status == 401
        async with session.get(f"{gw}/admin/v1/fleet") as resp:
            (row,) = (await resp.json())["workers"]
            assert row["url"] == "http://127.0.0.1:9"
    finally:
        await gateway.close()
    assert TOKEN not in caplog.text


async def test_without_a_join_token_registration_is_off(session: aiohttp.ClientSession) -> None:
    config = GatewayConfig()
    server = TestServer(create_app(config), host="127.0.0.1")
    await server.start_server()
    gw = str(server.make_url("")).rstrip("/")
    try:
        assert (await post_signed(session, gw, REGISTER_PATH, pack(registration())))[0] == 403
    finally:
        await server.close()


async def test_workers_come_back_on_their_own_after_a_gateway_restart(session: aiohttp.ClientSession) -> None:
    port = free_port()
    gateway, gw = await start_gateway(port)
    with registered_worker(gw, "edge-2") as worker:
        try:
            await wait_until(lambda: fleet_ids(session, gw))
            await gateway.close()
            gateway, gw = await start_gateway(port)  # a fresh gateway: empty fleet
            started = time.monotonic()
            statuses: list[int] = []

            async def served() -> bool:
                body = {"model": MODEL, "prompt": "Hi", "max_tokens": 1}
                async with session.post(f"{gw}/v1/completions", json=body) as resp:
                    statuses.append(resp.status)
                    if resp.status == 503:
                        assert (await resp.json())["error"]["code"] == "warming_up"
                        assert "Retry-After" in resp.headers
                    return resp.status == 200

            await wait_until(served, timeout_s=10)
            assert time.monotonic() - started < 3.0  # within a heartbeat interval or so (0.3 s here)
            assert set(statuses) <= {503, 200}  # "not back yet", never "does not exist" (404)

            # A clean stop deregisters at once, long before the TTL would.
            worker.process.terminate()
            assert await asyncio.to_thread(worker.process.wait, 30) == 0
            await wait_until(lambda: _empty(session, gw), timeout_s=1.0)
            assert "deregistered from" in worker.log()
        finally:
            await gateway.close()


async def test_a_stopping_worker_drains_requests_in_flight(session: aiohttp.ClientSession) -> None:
    gateway, gw = await start_gateway()
    try:
        with registered_worker(gw, "edge-3") as worker:
            await wait_until(lambda: fleet_ids(session, gw))
            body = {"model": MODEL, "prompt": "1, 2, 3, 4, 5, 6, 7,", "max_tokens": 48, "temperature": 0}
            request = asyncio.create_task(session.post(f"{gw}/v1/completions", json=body))
            await wait_until(lambda: _busy(worker), timeout_s=10)
            worker.process.terminate()
            resp = await request
            assert resp.status == 200
            assert (await resp.json())["usage"]["completion_tokens"] == 48
            assert await asyncio.to_thread(worker.process.wait, 30) == 0
    finally:
        await gateway.close()


def _busy(worker: Server) -> bool:
    with urllib.request.urlopen(f"{worker.url}/health", timeout=2) as resp:
        return bool(json.load(resp)["in_flight"])
