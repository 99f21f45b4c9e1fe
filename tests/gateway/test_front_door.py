"""The gateway's front door: slow, idle and malformed connections cannot starve real traffic.

Raw sockets against a real gateway (``gateway.serve``, the listening code
``infercdn gateway`` runs): slowloris heads and silent connections are
closed, bodies that never finish get 408, aiohttp's own protocol errors come
in OpenAI's JSON shape, and at a connection cap the oldest idle connection
makes room. The last test runs a gateway process under a low descriptor
limit with hundreds of idle sockets open, and real requests still succeed.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.request
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bench.servers import Server, free_port, running
from gateway.config import GatewayConfig
from gateway.serve import serve
from tests.conftest import MODEL
from tests.gateway.standin import StandIn
from tests.waiting import wait_until

FAST = {"header_timeout_s": 0.5, "keepalive_timeout_s": 0.5, "body_timeout_s": 0.5}


async def served_gateway(worker: StandIn, **settings: object) -> AsyncIterator[str]:
    port = free_port()
    config = GatewayConfig(port=port, workers=(worker.url,), refresh_interval_s=3600, **settings)  # type: ignore[arg-type]
    stop = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(config, until=stop))
    url = f"http://127.0.0.1:{port}"

    async def listening() -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False
        writer.close()
        return True

    await wait_until(listening, timeout_s=10)
    try:
        yield url
    finally:
        stop.set_result(None)
        await task


@pytest.fixture
async def gateway_url(standins: list[StandIn]) -> AsyncIterator[str]:
    worker = await StandIn().start()
    standins.append(worker)
    async for url in served_gateway(worker, **FAST):
        yield url


async def connect(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def closed_by_the_gateway(reader: asyncio.StreamReader, within_s: float = 10) -> bytes:
    """Everything the gateway sent before it closed the connection (fails if it never does)."""
    return await asyncio.wait_for(reader.read(), within_s)


def status_and_json(answer: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(200)) + b"\r\n",
        b"NOT HTTP AT ALL\r\n\r\n",
    ],
    ids=["header-too-long", "too-many-headers", "bad-request-line"],
)
async def test_protocol_errors_are_answered_in_openai_shape(gateway_url: str, request_bytes: bytes) -> None:
    reader, writer = await connect(gateway_url)
    writer.write(request_bytes)
    status, body = status_and_json(await closed_by_the_gateway(reader))
    writer.close()
    assert 400 <= status < 500
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"


async def test_silent_and_slowloris_connections_are_closed(gateway_url: str) -> None:
    silent_reader, silent = await connect(gateway_url)
    slow_reader, slow = await connect(gateway_url)
    started = time.monotonic()
    trickle = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"

    async def slowloris() -> None:
        for byte in trickle:
            slow.write(bytes([byte]))
            await asyncio.sleep(0.05)  # the attacker's pace, not the test waiting

    sending = asyncio.create_task(slowloris())
    assert await closed_by_the_gateway(silent_reader) == b""
    assert await closed_by_the_gateway(slow_reader) == b""
    sending.cancel()
    # Closed on the header deadline, though the trickle had not ended.
    assert time.monotonic() - started < len(trickle) * 0.05
    silent.close()
    slow.close()


async def test_an_idle_keep_alive_connection_is_closed(gateway_url: str) -> None:
    reader, writer = await connect(gateway_url)
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 200")
    await closed_by_the_gateway(reader)
    writer.close()


async def test_a_body_that_never_finishes_gets_408(gateway_url: str) -> None:
    reader, writer = await connect(gateway_url)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n" + b'{"model": "standin-model", '
    )
    status, body = status_and_json(await closed_by_the_gateway(reader))
    writer.close()
    assert status == 408
    assert body["error"]["code"] == "request_timeout"  # type: ignore[index]


async def test_at_the_per_client_cap_the_oldest_idle_connection_makes_room(standins: list[StandIn]) -> None:
    worker = await StandIn().start()
    standins.append(worker)
    async for gw in served_gateway(worker, max_connections_per_client=4):
        idle = [await connect(gw) for _ in range(4)]
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
        async with aiohttp.ClientSession() as session:
            for _ in range(3):
                async with session.post(f"{gw}/v1/chat/completions", json={**body, "model": "standin-model"}) as resp:
                    assert resp.status == 200
        # The oldest idle connection was closed to make room for the new one.
        assert await closed_by_the_gateway(idle[0][0]) == b""
        for _, writer in idle:
            writer.close()


def test_idle_connections_past_the_descriptor_limit_do_not_starve_real_traffic(worker: Server) -> None:
    with running("gateway", "gateway", "--worker", worker.url, fd_limit=256) as gateway:
        host, port = gateway.url.removeprefix("http://").split(":")
        idle = [socket.create_connection((host, int(port))) for _ in range(400)]
        try:
            body = json.dumps({"model": MODEL, "prompt": "Hi", "max_tokens": 1}).encode()
            for _ in range(20):
                request = urllib.request.Request(
                    f"{gateway.url}/v1/completions", data=body, headers={"Content-Type": "application/json"}
                )
                with urllib.request.urlopen(request, timeout=30) as resp:
                    assert resp.status == 200
        finally:
            for s in idle:
                s.close()
        assert "Too many open files" not in gateway.log()
