"""Workers that misbehave (real aiohttp servers on loopback): nothing they send reaches a client as fine.

Each broken answer either fails over before the client has a byte, or ends
a started stream with an error event and ``[DONE]``, within its timeout; each
counts against that worker, except a 4xx, which is the client's error.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from tests.gateway.standin import MODEL, OK_BODY, StandIn, answer_500, start_gateway, start_standin
from tests.waiting import wait_until

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
STREAM = {**CHAT, "stream": True}
EVENT = b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\n\n'


async def raw_answer(request: web.Request, head_and_body: bytes) -> web.StreamResponse:
    """Write bytes straight to the socket, then close it: HTTP no aiohttp response would send."""
    await request.read()
    assert request.transport is not None
    request.transport.write(head_and_body)
    request.transport.close()
    return web.Response()  # never sent: the socket is closed


async def invalid_json(request: web.Request) -> web.StreamResponse:
    return web.Response(body=b'{"choices": [{"index": 0, "mess', content_type="application/json")


async def not_openai_shaped(request: web.Request) -> web.StreamResponse:
    return web.json_response({"hello": "world"})


async def html_page(request: web.Request) -> web.StreamResponse:
    return web.Response(text="<html>metadata</html>", content_type="text/html")


async def eof_truncated_json(request: web.Request) -> web.StreamResponse:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
    return await raw_answer(request, head + b'{"choices": [{"index": 0, "message": {"content": "hel')


async def endless_body(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    while True:
        await response.write(b" " * 65536)


async def one_byte_a_tick(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    for byte in json.dumps(OK_BODY).encode():
        await response.write(bytes([byte]))
        await asyncio.sleep(0.2)  # the worker's pace, not the test waiting
    return response


async def too_many_requests(request: web.Request) -> web.StreamResponse:
    return web.json_response({"error": {"message": "slow down"}}, status=429, headers={"Retry-After": "9"})


async def client_error(request: web.Request) -> web.StreamResponse:
    body = {"error": {"message": "prompt too long", "type": "invalid_request_error", "param": None, "code": None}}
    return web.json_response(body, status=400)


async def sse(request: web.Request, *parts: bytes) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for part in parts:
        await response.write(part)
    return response


async def stream_without_done(request: web.Request) -> web.StreamResponse:
    return await sse(request, EVENT, EVENT, EVENT)


async def stream_cut_mid_event(request: web.Request) -> web.StreamResponse:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
    return await raw_answer(request, head + EVENT * 3 + EVENT[:20])


async def stream_invalid_from_the_start(request: web.Request) -> web.StreamResponse:
    return await sse(request, b"data: this is not json\n\n", b"data: [DONE]\n\n")


async def stream_forever(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    while True:
        await response.write(EVENT)
        await asyncio.sleep(0.05)  # the worker's pace: a token every 50 ms, forever


async def stream_then_silence(request: web.Request) -> web.StreamResponse:
    response = await sse(request, EVENT)
    await asyncio.Event().wait()  # never another byte
    return response


async def stream_with_usage_split(request: web.Request) -> web.StreamResponse:
    usage = b': usage {"prompt_tokens":5,"completion_tokens":42}\n\n'
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(EVENT + usage[:12])
    await asyncio.sleep(0.05)  # two network reads for one event
    await response.write(usage[12:] + b"data: [DONE]\n\n")
    return response


async def ask(session: aiohttp.ClientSession, gw: str, body: dict[str, object]) -> tuple[int, bytes, dict[str, str]]:
    async with session.post(f"{gw}/v1/chat/completions", json=body) as resp:
        return resp.status, await asyncio.wait_for(resp.read(), 20), dict(resp.headers)


def events_of(body: bytes) -> list[bytes]:
    return [e for e in body.split(b"\n\n") if e]


async def pair(standins: list[StandIn], gateways: list, bad_behaviour: object, **settings: object) -> tuple:  # type: ignore[type-arg]
    bad = await start_standin(standins, behaviour=bad_behaviour)
    good = await start_standin(standins)
    gw = await start_gateway(gateways, bad.url, good.url, **settings)
    return bad, good, gw


async def test_broken_non_streaming_answers_fail_over_and_count_against_the_worker(  # type: ignore[no-untyped-def]
    standins, gateways, session
) -> None:
    for behaviour in (invalid_json, not_openai_shaped, html_page, eof_truncated_json):
        bad, good, gw = await pair(standins, gateways, behaviour)
        for _ in range(8):
            status, body, headers = await ask(session, gw, CHAT)
            assert status == 200, (behaviour.__name__, body)
            assert json.loads(body) == OK_BODY
            assert headers["x-infercdn-worker"] == good.url
        # New, so on probation: its first broken answer ejected it; no client paid again.
        assert bad.hits == 1, behaviour.__name__


async def test_an_endless_body_is_cut_at_its_size_limit(standins, gateways, session) -> None:  # type: ignore[no-untyped-def]
    _, good, gw = await pair(standins, gateways, endless_body, max_response_bytes=256 * 1024)
    status, _, headers = await ask(session, gw, CHAT)
    assert status == 200 and headers["x-infercdn-attempts"] in ("1", "2")
    assert headers["x-infercdn-worker"] == good.url


async def test_a_trickling_body_is_bounded_by_the_request_timeout(standins, gateways, session) -> None:  # type: ignore[no-untyped-def]
    bad = await start_standin(standins, behaviour=one_byte_a_tick)
    gw = await start_gateway(gateways, bad.url, request_timeout_s=1.0)
    status, body, _ = await ask(session, gw, CHAT)
    assert status == 504
    assert json.loads(body)["error"]["code"] == "upstream_timeout"


async def test_a_429_is_busy_and_the_next_worker_is_tried(standins, gateways, session) -> None:  # type: ignore[no-untyped-def]
    limited, good, gw = await pair(standins, gateways, too_many_requests)
    for _ in range(4):
        status, _, headers = await ask(session, gw, CHAT)
        assert status == 200 and headers["x-infercdn-worker"] == good.url
    assert limited.hits >= 1
    only_limited = await start_gateway(gateways, limited.url)
    status, _, headers = await ask(session, only_limited, CHAT)
    assert status == 503 and headers["Retry-After"] == "9"


async def test_a_workers_4xx_is_relayed_and_never_ejects_it(standins, gateways, session) -> None:  # type: ignore[no-untyped-def]
    strict = await start_standin(standins, behaviour=client_error)
    gw = await start_gateway(gateways, strict.url, eject_after_failures=1)
    for _ in range(6):
        status, body, headers = await ask(session, gw, CHAT)
        assert status == 400 and headers["x-infercdn-attempts"] == "1"
        assert json.loads(body)["error"]["message"] == "prompt too long"
    assert strict.hits == 6
    async with session.get(f"{gw}/admin/v1/fleet") as resp:
        (worker,) = (await resp.json())["workers"]
    assert worker["health"] in ("probation", "healthy")


async def test_streams_that_break_end_with_an_error_event_and_done(standins, gateways, session) -> None:  # type: ignore[no-untyped-def]
    for behaviour in (stream_without_done, stream_cut_mid_event):
        broken = await start_standin(standins, behaviour=behaviour)
        gw = await start_gateway(gateways, broken.url)
        status, body, _ = await ask(session, gw, STREAM)
        assert status == 200
        assert_ends_with_an_error(body)


async def test_an_invalid_event_mid_stream_is_not_relayed_and_ends_the_stream(standins, gateways, session) -> None:  # type: ignore[no-untyped-def]
    client_has_the_first_event = asyncio.Event()

    async def stream_with_an_invalid_event(request: web.Request) -> web.StreamResponse:
        response = await sse(request, EVENT)
        await client_has_the_first_event.wait()
        await response.write(b"event: surprise\ndata: <b>bold</b>\n\n" + EVENT + b"data: [DONE]\n\n")
        return response

    broken = await start_standin(standins, behaviour=stream_with_an_invalid_event)
    gw = await start_gateway(gateways, broken.url)
    async with session.post(f"{gw}/v1/chat/completions", json=STREAM) as resp:
        assert await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 10) == EVENT
        client_has_the_first_event.set()
        rest = await asyncio.wait_for(resp.content.read(), 10)
    assert b"surprise" not in rest and b"<b>" not in rest  # what was invalid never reached the client
    assert_ends_with_an_error(EVENT + rest)


def assert_ends_with_an_error(body: bytes) -> None:
    events = events_of(body)
    assert events[0] + b"\n\n" == EVENT
    assert json.loads(events[-2][len(b"data: ") :])["error"]["type"] == "server_error"
    assert events[-1] == b"data: [DONE]"


async def test_a_stream_invalid_from_its_first_event_fails_over(standins, gateways, session) -> None:  # type: ignore[no-untyped-def]
    bad, good, gw = await pair(standins, gateways, stream_invalid_from_the_start)
    for _ in range(4):
        status, body, headers = await ask(session, gw, STREAM)
        assert status == 200 and headers["x-infercdn-worker"] == good.url
        assert b"not json" not in body
    assert bad.hits == 1


async def test_a_runaway_stream_is_ended_at_max_stream_s(standins, gateways, session) -> None:  # type: ignore[no-untyped-def]
    runaway = await start_standin(standins, behaviour=stream_forever)
    gw = await start_gateway(gateways, runaway.url, max_stream_s=0.5)
    _, body, _ = await ask(session, gw, STREAM)
    events = events_of(body)
    assert events[0] + b"\n\n" == EVENT  # relayed while it ran
    assert b"0.5 s limit" in events[-2]
    assert events[-1] == b"data: [DONE]"


async def test_a_worker_gone_silent_mid_stream_is_ended_at_the_request_timeout(standins, gateways, session) -> None:  # type: ignore[no-untyped-def]
    silent = await start_standin(standins, behaviour=stream_then_silence)
    gw = await start_gateway(gateways, silent.url, request_timeout_s=0.5)
    _, body, _ = await ask(session, gw, STREAM)
    events = events_of(body)
    assert events[0] + b"\n\n" == EVENT
    assert json.loads(events[1][len(b"data: ") :])["error"]["code"] == "upstream_timeout"
    assert events[-1] == b"data: [DONE]"


async def test_usage_split_across_reads_is_counted_and_its_comment_never_reaches_the_client(  # type: ignore[no-untyped-def]
    standins, gateways, session
) -> None:
    worker = await start_standin(standins, behaviour=stream_with_usage_split)
    gw = await start_gateway(gateways, worker.url)
    status, body, _ = await ask(session, gw, STREAM)
    assert status == 200
    assert all(line.startswith(b"data: ") for line in body.split(b"\n") if line)
    assert events_of(body)[-1] == b"data: [DONE]"
    async with session.get(f"{gw}/metrics") as resp:
        text = await resp.text()
    counted = {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.labels.get("model") == MODEL and s.name.endswith("_tokens_total")
    }
    assert counted == {"infercdn_gateway_prompt_tokens_total": 5.0, "infercdn_gateway_completion_tokens_total": 42.0}


async def test_a_request_fails_over_to_a_new_worker_busy_with_its_first_request(  # type: ignore[no-untyped-def]
    standins, gateways, session
) -> None:
    release = asyncio.Event()
    good_port: list[int] = []

    async def first_hit_is_good(request: web.Request) -> web.StreamResponse:
        port = request.url.port or 0
        if not good_port:
            good_port.append(port)
        if port != good_port[0]:
            return await answer_500(request)  # the other new worker is broken
        await release.wait()  # the good one keeps its requests in flight: on probation and busy
        return web.json_response(OK_BODY)

    a = await start_standin(standins, behaviour=first_hit_is_good)
    b = await start_standin(standins, behaviour=first_hit_is_good)
    gw = await start_gateway(gateways, a.url, b.url, max_attempts=2)
    first = asyncio.create_task(ask(session, gw, CHAT))
    await wait_until(lambda: a.hits + b.hits == 1, timeout_s=10)
    # Planned while the good worker is busy on probation: the broken one is tried first, the good one after.
    second = asyncio.create_task(ask(session, gw, CHAT))
    await wait_until(lambda: a.hits + b.hits == 3, timeout_s=10)
    release.set()
    for status, _, headers in await asyncio.gather(first, second):
        assert status == 200
        assert headers["x-infercdn-worker"].endswith(f":{good_port[0]}")
