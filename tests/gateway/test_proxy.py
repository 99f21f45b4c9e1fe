"""Gateway forwarding against stand-in upstreams: failover, relay, errors."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest
from aiohttp import web

from bench.servers import free_port
from routing.quantization import Quantization
from tests.gateway.standin import (
    MODEL,
    OFFER,
    OK_BODY,
    answer_500,
    answer_busy,
    answer_ok,
    never_answer,
    start_gateway,
    start_standin,
)

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}


async def test_a_5xx_fails_over_to_the_next_worker(standins, gateways, session) -> None:  # type: ignore[no-untyped-def]
    broken = await start_standin(standins, behaviour=answer_500)
    good = await start_standin(standins)
    gw = await start_gateway(gateways, broken.url, good.url, max_attempts=2)
    attempts = []
    for _ in range(12):
        async with session.post(f"{gw}/v1/chat/completions", json=CHAT) as resp:
            assert resp.status == 200
            assert await resp.json() == OK_BODY
            assert resp.headers["x-infercdn-worker"] == good.url
            attempts.append(int(resp.headers["x-infercdn-attempts"]))
    assert broken.hits == sum(a - 1 for a in attempts) > 0
    assert good.hits == 12


async def test_unreachable_worker_fails_over_and_the_last_failure_is_502(standins, gateways, session) -> None:  # type: ignore[no-untyped-def]
    doomed = await start_standin(standins)
    gw = await start_gateway(gateways, doomed.url)
    await doomed.stop()  # known to the gateway, then gone
    async with session.post(f"{gw}/v1/chat/completions", json=CHAT) as resp:
        assert resp.status == 502
        error = (await resp.json())["error"]
        assert error["code"] == "upstream_unreachable"
    async with session.post(f"{gw}/v1/chat/completions", json=CHAT) as resp:
        assert resp.status == 503  # now marked unhealthy: nobody left to try
        assert (await resp.json())["error"]["code"] == "no_healthy_worker"


async def test_never_reached_worker_gives_503_not_404(gateways, session) -> None:  # type: ignore[no-untyped-def]
    gw = await start_gateway(gateways, f"http://127.0.0.1:{free_port()}")
    async with session.post(f"{gw}/v1/chat/completions", json=CHAT) as resp:
        assert resp.status == 503
        assert "Retry-After" in resp.headers
        assert set((await resp.json())["error"]) == {"message", "type", "param", "code"}


async def test_busy_everywhere_relays_503_with_retry_after(standins, gateways, session) -> None:  # type: ignore[no-untyped-def]
    a = await start_standin(standins, behaviour=answer_busy)
    b = await start_standin(standins, behaviour=answer_busy)
    gw = await start_gateway(gateways, a.url, b.url)
    async with session.post(f"{gw}/v1/chat/completions", json=CHAT) as resp:
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "7"
    assert a.hits == b.hits == 1


async def test_no_first_byte_in_time_moves_on(standins, gateways, session) -> None:  # type: ignore[no-untyped-def]
    stuck = await start_standin(standins, behaviour=never_answer)
    good = await start_standin(standins)
    gw = await start_gateway(gateways, stuck.url, good.url, first_byte_timeout_s=0.3)
    for _ in range(4):
        async with session.post(f"{gw}/v1/chat/completions", json={**CHAT, "stream": True}) as resp:
            assert resp.status == 200
    assert stuck.hits >= 1
    gw_only_stuck = await start_gateway(gateways, stuck.url, first_byte_timeout_s=0.3)
    async with session.post(f"{gw_only_stuck}/v1/chat/completions", json={**CHAT, "stream": True}) as resp:
        assert resp.status == 504
        assert (await resp.json())["error"]["code"] == "upstream_timeout"


async def test_the_deadline_bounds_all_attempts_together(standins, gateways, session) -> None:  # type: ignore[no-untyped-def]
    stuck = [await start_standin(standins, behaviour=never_answer) for _ in range(3)]
    gw = await start_gateway(
        gateways, *(s.url for s in stuck), first_byte_timeout_s=0.4, deadline_s=0.6, max_attempts=3
    )
    async with session.post(f"{gw}/v1/chat/completions", json={**CHAT, "stream": True}) as resp:
        assert resp.status == 504
        assert (await resp.json())["error"]["code"] == "upstream_timeout"
    # The second attempt got what was left of the deadline; a third never started.
    assert sum(s.hits for s in stuck) == 2


async def test_headers_without_a_first_chunk_count_as_no_first_byte(standins, gateways, session) -> None:  # type: ignore[no-untyped-def]
    async def headers_then_silence(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await asyncio.sleep(3600)
        return response

    mute = await start_standin(standins, behaviour=headers_then_silence)
    good = await start_standin(standins)
    gw = await start_gateway(gateways, mute.url, good.url, first_byte_timeout_s=0.3)
    for _ in range(3):
        async with session.post(f"{gw}/v1/chat/completions", json={**CHAT, "stream": True}) as resp:
            assert resp.status == 200
            assert resp.headers["x-infercdn-worker"] == good.url
    assert mute.hits >= 1


async def test_a_failing_worker_is_ejected_after_consecutive_failures(standins, gateways, session) -> None:  # type: ignore[no-untyped-def]
    served_ok = 2

    async def turns_bad(request: web.Request) -> web.StreamResponse:
        return await (answer_ok(request) if flaky.hits <= served_ok else answer_500(request))

    flaky = await start_standin(standins, behaviour=turns_bad)
    good = await start_standin(standins)
    gw = await start_gateway(gateways, flaky.url, good.url, max_attempts=2, eject_after_failures=3)

    async def ask() -> None:
        async with session.post(f"{gw}/v1/chat/completions", json=CHAT) as resp:
            assert resp.status == 200  # a failure on it fails over to the good one

    for _ in range(100):
        if flaky.hits == served_ok + 3:
            break
        await ask()
    assert flaky.hits == served_ok + 3  # off probation after a success, so three failures to eject
    for _ in range(10):
        await ask()
    assert flaky.hits == served_ok + 3  # ejected: no client request pays for it any more


async def test_a_new_worker_that_fails_its_first_request_is_ejected_at_once(standins, gateways, session) -> None:  # type: ignore[no-untyped-def]
    broken = await start_standin(standins, behaviour=answer_500)
    good = await start_standin(standins)
    gw = await start_gateway(gateways, broken.url, good.url, max_attempts=2)
    for _ in range(10):
        async with session.post(f"{gw}/v1/chat/completions", json=CHAT) as resp:
            assert resp.status == 200
    assert broken.hits <= 1


async def test_sse_is_relayed_as_it_arrives(standins, gateways, session) -> None:  # type: ignore[no-untyped-def]
    release = asyncio.Event()

    async def slow_stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'data: {"n":1}\n\n')
        await release.wait()  # only the client, having read event 1, lets us go on
        await resp.write(b'data: {"n":2}\n\ndata: [DONE]\n\n')
        return resp

    upstream = await start_standin(standins, behaviour=slow_stream)
    gw = await start_gateway(gateways, upstream.url)
    async with session.post(f"{gw}/v1/chat/completions", json={**CHAT, "stream": True}) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        first = await asyncio.wait_for(resp.content.readline(), 5)
        assert first == b'data: {"n":1}\n'
        release.set()
        rest = await resp.content.read()
    assert rest == b'\ndata: {"n":2}\n\ndata: [DONE]\n\n'


async def test_upstream_dying_mid_stream_ends_with_error_event_and_done(standins, gateways, session) -> None:  # type: ignore[no-untyped-def]
    async def dies(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'data: {"n":1}\n\n')
        assert request.transport is not None
        request.transport.abort()
        return resp

    upstream = await start_standin(standins, behaviour=dies)
    gw = await start_gateway(gateways, upstream.url)
    async with session.post(f"{gw}/v1/chat/completions", json={**CHAT, "stream": True}) as resp:
        body = await asyncio.wait_for(resp.content.read(), 5)
    events = [line for line in body.split(b"\n\n") if line]
    assert events[0] == b'data: {"n":1}'
    assert events[1].startswith(b'data: {"error":')
    assert events[-1] == b"data: [DONE]"


async def test_request_id_is_propagated_or_created(standins, gateways, session) -> None:  # type: ignore[no-untyped-def]
    upstream = await start_standin(standins)
    gw = await start_gateway(gateways, upstream.url)
    async with session.post(f"{gw}/v1/chat/completions", json=CHAT, headers={"x-request-id": "abc-123"}) as resp:
        assert resp.headers["x-request-id"] == "abc-123"
    assert upstream.seen_headers[-1]["x-request-id"] == "abc-123"
    async with session.post(f"{gw}/v1/chat/completions", json=CHAT) as resp:
        made = resp.headers["x-request-id"]
    assert len(made) == 32
    assert upstream.seen_headers[-1]["x-request-id"] == made


async def test_body_is_forwarded_byte_for_byte(standins, gateways, session) -> None:  # type: ignore[no-untyped-def]
    upstream = await start_standin(standins)
    gw = await start_gateway(gateways, upstream.url)
    raw = b'{"model": "standin-model",  "messages": [{"role": "user", "content": "h\\u00e9"}], "x_extra": 1}'
    async with session.post(f"{gw}/v1/chat/completions", data=raw) as resp:
        assert resp.status == 200
    assert upstream.seen_bodies[-1] == raw


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (b"{not json", 400, None),
        (b"[1, 2]", 400, None),
        (b'{"model": "standin-model"}', 400, "messages"),
        (b'{"messages": [{"role": "user", "content": "x"}]}', 400, "model"),
        (b'{"model": "standin-model", "messages": "hi"}', 400, "messages"),
        (b'{"model": "standin-model", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}', 400, "stream"),
        (
            b'{"model": "standin-model", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}',
            400,
            "max_tokens",
        ),
        (b'{"model": "other", "messages": [{"role": "user", "content": "x"}]}', 404, "model"),
    ],
)
async def test_bad_input_gets_an_openai_error(standins, gateways, session, body, status, param) -> None:  # type: ignore[no-untyped-def]
    upstream = await start_standin(standins)
    gw = await start_gateway(gateways, upstream.url)
    async with session.post(f"{gw}/v1/chat/completions", data=body) as resp:
        assert resp.status == status
        error = (await resp.json())["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param
    assert upstream.hits == 0


async def test_oversized_body_is_413(standins, gateways, session) -> None:  # type: ignore[no-untyped-def]
    upstream = await start_standin(standins)
    gw = await start_gateway(gateways, upstream.url, max_body_bytes=2048)
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 5000}]}
    async with session.post(f"{gw}/v1/chat/completions", json=big) as resp:
        assert resp.status == 413
        assert (await resp.json())["error"]["code"] == "request_too_large"
    async with session.get(f"{gw}/v1/nothing-here") as resp:
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "not_found"


async def test_models_are_deduplicated_across_workers(standins, gateways, session) -> None:  # type: ignore[no-untyped-def]
    a = await start_standin(standins)
    b = await start_standin(standins)
    gw = await start_gateway(gateways, a.url, b.url)
    async with session.get(f"{gw}/v1/models") as resp:
        data = (await resp.json())["data"]
    assert [m["id"] for m in data] == [MODEL]
    assert data[0]["quantizations"] == [{"label": "Q8_0", "bits": 8.0, "class": "int8"}]
    assert data[0]["workers"] == 2


async def test_quantization_constraints_route_and_are_stripped(standins, gateways, session) -> None:  # type: ignore[no-untyped-def]
    q8 = await start_standin(standins)  # the stand-in's default offer is Q8_0
    q4 = await start_standin(standins, offer=replace(OFFER, quantization=Quantization("Q4_K_M", 4, "int4")))
    gw = await start_gateway(gateways, q8.url, q4.url)
    for _ in range(4):
        async with session.post(f"{gw}/v1/chat/completions", json={**CHAT, "quantizations": ["int4"]}) as resp:
            assert resp.status == 200
            assert resp.headers["x-infercdn-worker"] == q4.url
        async with session.post(
            f"{gw}/v1/chat/completions", json={**CHAT, "model": f"{MODEL}:Q8_0"}, headers={"x-infercdn-region": "eu"}
        ) as resp:
            assert resp.headers["x-infercdn-worker"] == q8.url
    assert q4.hits == q8.hits == 4
    assert all(b"quantizations" not in body for body in q4.seen_bodies)
    assert all(json.loads(body)["model"] == f"{MODEL}:Q8_0" for body in q8.seen_bodies)
    async with session.post(f"{gw}/v1/chat/completions", json={**CHAT, "quantizations": ["fp16"]}) as resp:
        assert resp.status == 503
        error = (await resp.json())["error"]
    assert error["code"] == "no_suitable_quantization"
    assert "Q4_K_M" in error["message"] and "Q8_0" in error["message"]
