"""Workers nobody can dial, serving through the tunnel they open (real gateway, real workers, loopback).

The tunnelled worker advertises a port nobody listens on, so whatever it
serves came through its tunnel.
"""

from __future__ import annotations

import asyncio
import json
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import msgpack
import pytest
from aiohttp import web

from bench.servers import Server, free_port, running
from gateway import api
from routing import tunnel_wire as wire
from tests.conftest import MODEL
from tests.gateway.standin import MODEL as STANDIN_MODEL
from tests.gateway.standin import OK_BODY, Behaviour
from tests.gateway.test_registry import TOKEN, start_gateway
from tests.gateway.tunnel_peers import (
    open_raw,
    register_tunnelled,
    signed_open,
    start_tunnel_gateway,
    tunnelled_standin,
)
from tests.metrics_text import sample
from tests.waiting import wait_until

QUESTION = {"model": MODEL, "prompt": "The capital of France is", "max_tokens": 2, "temperature": 0}


@contextmanager
def tunnelled_worker(gateway_urls: list[str], worker_id: str) -> Iterator[Server]:
    gateways = [arg for url in gateway_urls for arg in ("--gateway", url)]
    with (
        tempfile.TemporaryDirectory() as state,
        running(
            "edge_worker",
            *("--threads", "1", *gateways, "--worker-id", worker_id, "--tunnel"),
            *("--advertise-url", f"http://127.0.0.1:{free_port()}"),  # nobody listens there
            env={"INFERCDN_WORKER_JOIN_TOKEN": TOKEN, "INFERCDN_WORKER_KEY_FILE": str(Path(state) / "w.key")},
        ) as server,
    ):
        yield server


async def fleet_row(session: aiohttp.ClientSession, gw: str, worker_id: str) -> dict[str, object] | None:
    async with session.get(f"{gw}/admin/v1/fleet") as resp:
        rows = [w for w in (await resp.json())["workers"] if w["id"] == worker_id]
    return rows[0] if rows else None


async def serving_through_tunnel(session: aiohttp.ClientSession, gw: str, worker_id: str) -> bool:
    row = await fleet_row(session, gw, worker_id)
    return row is not None and row["via"] == "tunnel" and row["health"] != "unreachable" and row["rtt_ms"] is not None


async def all_reachable(session: aiohttp.ClientSession, gw: str, worker_ids: tuple[str, ...]) -> bool:
    rows = [await fleet_row(session, gw, w) for w in worker_ids]
    return all(r is not None and r["health"] != "unreachable" for r in rows)


async def chat_status(session: aiohttp.ClientSession, gw: str) -> tuple[int, str]:
    async with session.post(f"{gw}/v1/chat/completions", json=STANDIN_CHAT) as resp:
        await resp.read()
        return resp.status, resp.headers.get("x-infercdn-worker", "")


async def test_a_worker_nobody_can_dial_serves_each_gateway_through_its_tunnel_and_comes_back(
    session: aiohttp.ClientSession,
) -> None:
    first, gw1 = await start_gateway(probe_interval_s=0.2)
    second, gw2 = await start_gateway(probe_interval_s=0.2)
    try:
        with tunnelled_worker([gw1, gw2], "behind-nat"):
            for gw in (gw1, gw2):
                await wait_until(lambda gw=gw: serving_through_tunnel(session, gw, "behind-nat"))
                async with session.post(f"{gw}/v1/completions", json=QUESTION) as resp:
                    assert resp.status == 200, await resp.text()
                    assert "Paris" in (await resp.json())["choices"][0]["text"]
                    assert resp.headers["x-infercdn-worker"] == "behind-nat"

            chat = {"model": MODEL, "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 8}
            async with session.post(f"{gw1}/v1/chat/completions", json={**chat, "stream": True}) as resp:
                assert resp.status == 200
                assert resp.content_type == "text/event-stream"
                events = [line async for line in resp.content if line.startswith(b"data: ")]
            assert events[-1] == b"data: [DONE]\n"
            deltas = [json.loads(e[6:])["choices"][0]["delta"] for e in events[:-1]]
            assert any(d.get("content") for d in deltas)

            row = await fleet_row(session, gw1, "behind-nat")
            assert row is not None and row["url"].startswith("http://127.0.0.1:")  # a label, never dialled

            # The second gateway restarts: the worker registers and dials again on its own.
            port = second.port
            await second.close()
            second, gw2 = await start_gateway(port=port, probe_interval_s=0.2)
            await wait_until(lambda: serving_through_tunnel(session, gw2, "behind-nat"))
            async with session.post(f"{gw2}/v1/completions", json=QUESTION) as resp:
                assert resp.status == 200, await resp.text()
    finally:
        await first.close()
        await second.close()


async def test_only_a_signed_tunnel_for_its_own_registered_id_opens(session: aiohttp.ClientSession) -> None:
    gateway, gw = await start_tunnel_gateway()
    try:
        await register_tunnelled(session, gw, "mine")
        await register_tunnelled(session, gw, "theirs")

        async def status_of(path: str, headers: dict[str, str]) -> int:
            try:
                async with session.ws_connect(gw + path, headers=headers):
                    return 101
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status

        path, headers = signed_open("mine")
        assert await status_of(path, {}) == 401  # unsigned
        assert await status_of(*signed_open("mine", path_id="theirs")) == 403  # its key, another id's path
        forged = {**headers, "x-infercdn-signature": signed_open("theirs")[1]["x-infercdn-signature"]}
        assert await status_of(path, forged) == 401
        assert await status_of(*signed_open("nobody")) in (401, 403)  # a key never enrolled
        assert await status_of(path, headers) == 101
        assert await status_of(path, headers) == 401  # the same open again: a replay

        # A second signed tunnel for the same id replaces the first.
        first = await open_raw(session, gw, "mine")
        second = await open_raw(session, gw, "mine")
        async for _ in first:  # pings and probes, until the gateway closes it
            pass
        assert first.closed and not second.closed
        await second.close()
    finally:
        await gateway.close()


STANDIN_CHAT = {"model": STANDIN_MODEL, "messages": [{"role": "user", "content": "hi"}]}
HEAD_JSON = (("Content-Type", "application/json"),)


def _bad_frames(stream: int) -> dict[str, bytes]:
    return {
        "data past the window": b"",  # sent as a whole window and a chunk more
        "not msgpack": b"\xc1\xc1\xc1",
        "an unknown kind": msgpack.packb([42, stream]),
        "a gateway's kind": wire.encode(wire.Cancel(stream)),
        "data before the head": wire.encode(wire.Data(stream, b"{}")),
        "a stream never opened": wire.encode(wire.Head(stream + 1000, 200, HEAD_JSON)),
        "a status out of range": msgpack.packb([2, stream, 999, []]),
        "a header with a newline": msgpack.packb([2, stream, 200, [["X-A", "b\nc"]]]),
    }


@pytest.mark.parametrize("breach", sorted(_bad_frames(1)))
async def test_a_frame_that_breaks_the_protocol_closes_that_tunnel_and_the_request_fails_over(
    session: aiohttp.ClientSession, breach: str
) -> None:
    gateway, gw = await start_tunnel_gateway()
    good = None
    try:
        good = await tunnelled_standin(session, gw, "good")
        await register_tunnelled(session, gw, "evil")
        evil = await open_raw(session, gw, "evil")
        evil_hit = asyncio.Event()

        async def misbehave() -> None:
            async for message in evil:  # answers probes; breaks the protocol on the first real request
                frame = wire.decode(message.data, wire.FROM_GATEWAY)
                if isinstance(frame, wire.Ping):
                    await evil.send_bytes(wire.encode(wire.Pong(frame.sequence)))
                elif isinstance(frame, wire.Request) and frame.path == "/health":
                    await evil.send_bytes(wire.encode(wire.Head(frame.stream, 200, HEAD_JSON)))
                    await evil.send_bytes(wire.encode(wire.Data(frame.stream, b"{}")))
                    await evil.send_bytes(wire.encode(wire.End(frame.stream)))
                elif isinstance(frame, wire.Request):
                    evil_hit.set()
                    if breach == "data past the window":
                        await evil.send_bytes(wire.encode(wire.Head(frame.stream, 200, HEAD_JSON)))
                        for _ in range(wire.WINDOW // wire.MAX_CHUNK + 1):
                            await evil.send_bytes(wire.encode(wire.Data(frame.stream, b" " * wire.MAX_CHUNK)))
                    else:
                        await evil.send_bytes(_bad_frames(frame.stream)[breach])

        behaviour = asyncio.create_task(misbehave())
        await wait_until(lambda: all_reachable(session, gw, ("good", "evil")))
        for _ in range(50):  # concurrent requests: one of them lands on the evil worker
            answers = await asyncio.gather(*(chat_status(session, gw) for _ in range(4)))
            assert answers == [(200, "good")] * 4
            if evil_hit.is_set():
                break
        assert evil_hit.is_set()
        await asyncio.wait_for(behaviour, timeout=30)  # its tunnel was closed under it
        assert evil.closed
        assert await chat_status(session, gw) == (200, "good")
    finally:
        if good is not None:
            await good.stop()
        await gateway.close()


EVENT = b'data: {"choices":[{"index":0,"delta":{"content":"%s"}}]}\n\n'


def endless_stream(stopped: asyncio.Event) -> Behaviour:
    async def behaviour(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            while True:
                await response.write(EVENT % b"x")
                await asyncio.sleep(0.01)  # a model's pace
        finally:
            stopped.set()  # the client left: cancelled, or the write failed

    return behaviour


async def test_a_client_that_leaves_stops_the_generation_behind_the_tunnel(session: aiohttp.ClientSession) -> None:
    gateway, gw = await start_tunnel_gateway()
    stopped = asyncio.Event()
    worker = await tunnelled_standin(session, gw, "w", endless_stream(stopped))
    try:
        await wait_until(lambda: serving_through_tunnel(session, gw, "w"))
        async with session.post(f"{gw}/v1/chat/completions", json={**STANDIN_CHAT, "stream": True}) as resp:
            assert resp.status == 200
            assert (await resp.content.readline()).startswith(b"data: ")
        await asyncio.wait_for(stopped.wait(), timeout=30)
    finally:
        await worker.stop()
        await gateway.close()


async def test_an_answer_many_windows_long_arrives_whole(session: aiohttp.ClientSession) -> None:
    events = 2000  # ~2 MB with the padding below: 8 windows
    padding = b"y" * 1000

    async def long_stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for _ in range(events):
            await response.write(EVENT % padding)
        await response.write(b"data: [DONE]\n\n")
        return response

    gateway, gw = await start_tunnel_gateway()
    worker = await tunnelled_standin(session, gw, "w", long_stream)
    try:
        await wait_until(lambda: serving_through_tunnel(session, gw, "w"))
        async with session.post(f"{gw}/v1/chat/completions", json={**STANDIN_CHAT, "stream": True}) as resp:
            lines = [line async for line in resp.content if line.startswith(b"data: ")]
        assert len(lines) == events + 1 and lines[-1] == b"data: [DONE]\n"
        assert all(padding in line for line in lines[:-1])
        assert "w" in gateway.app[api.STATE].registry.tunnels  # never closed for overrunning its window
    finally:
        await worker.stop()
        await gateway.close()


async def stalled_reader(gw: str, body: dict[str, object]) -> asyncio.StreamWriter:
    """A client that sends a request, then never reads: a 4 KiB receive buffer, so the kernel does not read
    the stream for it either."""
    host, port = gw.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    _, writer = await asyncio.open_connection(sock=sock)
    payload = json.dumps(body).encode()
    head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
    writer.write(head.encode() + f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
    await writer.drain()
    return writer


async def test_a_stalled_stream_holds_back_nothing_else_on_its_tunnel(session: aiohttp.ClientSession) -> None:
    """Per-stream windows: a client that stops reading a huge stream blocks neither another stream read at
    full speed nor small requests on the same tunnel (one byte stream without windows would hold them all)."""
    padding = b"z" * 1000
    written: dict[str, int] = {}

    async def streams(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if not body.get("stream"):
            return web.json_response(OK_BODY)
        who, events = str(body.get("user")), 40_000 if body.get("user") == "stalled" else 2000  # 40 MB, 2 MB
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for written[who] in range(1, events + 1):
            await response.write(EVENT % padding)
        await response.write(b"data: [DONE]\n\n")
        return response

    gateway, gw = await start_tunnel_gateway()
    worker = await tunnelled_standin(session, gw, "w", streams)
    stalled = None
    try:
        await wait_until(lambda: serving_through_tunnel(session, gw, "w"))
        stalled = await stalled_reader(gw, {**STANDIN_CHAT, "stream": True, "user": "stalled"})
        await wait_until(lambda: written.get("stalled", 0) > 0)
        async with asyncio.timeout(60):  # a hang guard only: everything below must simply finish
            body = {**STANDIN_CHAT, "stream": True, "user": "reader"}
            async with session.post(f"{gw}/v1/chat/completions", json=body) as resp:
                lines = [line async for line in resp.content if line.startswith(b"data: ")]
            small = await asyncio.gather(*(chat_status(session, gw) for _ in range(20)))
        assert len(lines) == 2001 and lines[-1] == b"data: [DONE]\n"
        assert small == [(200, "w")] * 20
        assert written["stalled"] < 40_000  # it waits for its reader (its window), and held nobody back
    finally:
        if stalled is not None:
            stalled.close()
        await worker.stop()
        await gateway.close()


async def test_a_tunnel_dropped_mid_load_loses_no_request(session: aiohttp.ClientSession) -> None:
    async def steady(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.05)  # a model's pace: requests overlap
        return web.json_response(OK_BODY)

    async def busy(request: web.Request) -> web.StreamResponse:
        await asyncio.Event().wait()  # still working when its tunnel drops
        raise AssertionError("unreachable")

    gateway, gw = await start_tunnel_gateway()
    near = await tunnelled_standin(session, gw, "near", busy)
    far = await tunnelled_standin(session, gw, "far", steady)
    try:
        await wait_until(lambda: all_reachable(session, gw, ("near", "far")))
        load = [asyncio.create_task(chat_status(session, gw)) for _ in range(60)]
        await wait_until(lambda: near.standin.hits >= 3)
        near.task.cancel()  # its tunnel drops with requests in flight
        answers = await asyncio.gather(*load)
        assert [status for status, _ in answers] == [200] * 60  # those on it failed over
        reasons = ("error", "connect")
        failed_over = [
            await asyncio.to_thread(sample, gw, "infercdn_gateway_failovers_total", reason=r) for r in reasons
        ]
        assert sum(failed_over) >= 1
    finally:
        await near.stop()
        await far.stop()
        await gateway.close()


async def test_a_tunnel_dropped_mid_stream_ends_the_stream_with_an_error_event(session: aiohttp.ClientSession) -> None:
    gateway, gw = await start_tunnel_gateway()
    worker = await tunnelled_standin(session, gw, "w", endless_stream(asyncio.Event()))
    try:
        await wait_until(lambda: serving_through_tunnel(session, gw, "w"))
        async with session.post(f"{gw}/v1/chat/completions", json={**STANDIN_CHAT, "stream": True}) as resp:
            assert (await resp.content.readline()).startswith(b"data: ")
            worker.task.cancel()  # the tunnel drops after the first byte
            events = [line async for line in resp.content if line.startswith(b"data: ")]
        assert events[-1] == b"data: [DONE]\n"
        assert b'"error"' in events[-2]
    finally:
        await worker.stop()
        await gateway.close()


async def test_an_api_that_fails_mid_stream_ends_the_stream_instead_of_leaving_it_open(
    session: aiohttp.ClientSession,
) -> None:
    """An error the worker's own API lets out after its first bytes (a connection of its own that broke)."""

    async def breaks(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(EVENT % b"x")
        raise ConnectionResetError("the model server behind this API went away")

    gateway, gw = await start_tunnel_gateway()
    worker = await tunnelled_standin(session, gw, "w", breaks)
    try:
        await wait_until(lambda: serving_through_tunnel(session, gw, "w"))
        async with asyncio.timeout(30):  # a hang guard only: the stream must simply end
            async with session.post(f"{gw}/v1/chat/completions", json={**STANDIN_CHAT, "stream": True}) as resp:
                events = [line async for line in resp.content if line.startswith(b"data: ")]
        assert events[-1] == b"data: [DONE]\n" and b'"error"' in events[-2]
        assert worker.client.connected.is_set()  # the tunnel itself is fine
    finally:
        await worker.stop()
        await gateway.close()
