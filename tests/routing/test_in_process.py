"""A tunnel's requests served in-process by a real aiohttp application: what goes out is what HTTP would carry.

The application is a real one (routing, middlewares, response hooks); the
tunnel's side is the list of frames ``serve`` sends and the window it is granted.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from multidict import CIMultiDict

from edge_worker.errors import openai_errors
from routing import tunnel_wire as wire
from routing.in_process import InProcessApi, Window
from tests.waiting import wait_until


class Frames:
    def __init__(self) -> None:
        self.sent: list[wire.Frame] = []

    async def send(self, frame: wire.Frame) -> None:
        self.sent.append(frame)

    def body(self) -> bytes:
        return b"".join(f.chunk for f in self.sent if isinstance(f, wire.Data))


CHUNK = b"data: " + b"x" * 1000 + b"\n\n"


@pytest.fixture
async def api() -> AsyncIterator[tuple[InProcessApi, dict[str, object]]]:
    seen: dict[str, object] = {}

    async def echo(request: web.Request) -> web.Response:
        seen["body"] = await request.read()
        seen["headers"] = dict(request.headers)
        seen["query"] = request.path
        return web.json_response({"length": len(await request.read())}, headers={"x-request-id": "r1"})

    async def long_stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            for _ in range(int(request.query.get("n", "1000"))):
                await response.write(CHUNK)
        except asyncio.CancelledError:
            seen["cancelled"] = True
            raise
        await response.write_eof()
        return response

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    async def hook(request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Cache-Control"] = "no-store"

    app = web.Application(middlewares=[openai_errors])
    app.router.add_post("/v1/echo", echo)
    app.router.add_get("/v1/stream", long_stream)
    app.router.add_get("/v1/broken", broken)
    app.on_response_prepare.append(hook)
    runner = web.AppRunner(app)
    await runner.setup()
    yield InProcessApi(app), seen
    await runner.cleanup()


def request(stream: int, method: str, path: str, body: bytes = b"") -> wire.Request:
    return wire.Request(stream, method, path, (), body)


async def test_a_short_answer_is_one_frame_with_the_apps_headers_and_hooks(
    api: tuple[InProcessApi, dict[str, object]],
) -> None:
    local, seen = api
    frames = Frames()
    body = json.dumps({"x": "y" * 5000}).encode()
    headers = CIMultiDict({"Authorization": "Bearer t", "Content-Type": "application/json"})
    await local.serve(request(3, "POST", "/v1/echo", body), headers, Window(), frames.send)
    [answer] = frames.sent
    assert isinstance(answer, wire.Answer) and answer.stream == 3 and answer.status == 200
    assert json.loads(answer.body) == {"length": len(body)}
    sent_headers = dict(answer.headers)
    assert sent_headers["x-request-id"] == "r1" and sent_headers["Cache-Control"] == "no-store"  # the hook ran
    assert sent_headers["Content-Length"] == str(len(answer.body))
    assert seen["body"] == body and seen["headers"] == {"Authorization": "Bearer t", "Content-Type": "application/json"}


async def test_errors_come_back_as_the_apps_middleware_shapes_them(
    api: tuple[InProcessApi, dict[str, object]],
) -> None:
    local, _ = api
    for path, status in (("/v1/broken", 500), ("/v1/nothing-here", 404)):
        frames = Frames()
        await local.serve(request(1, "GET", path), CIMultiDict(), Window(), frames.send)
        [answer] = frames.sent
        assert isinstance(answer, wire.Answer) and answer.status == status
        assert "error" in json.loads(answer.body), answer.body  # OpenAI's shape, no traceback
    frames = Frames()
    await local.serve(request(2, "POST", "/v1/stream"), CIMultiDict(), Window(), frames.send)  # wrong method
    assert isinstance(frames.sent[0], wire.Answer) and frames.sent[0].status == 405


async def test_a_long_answer_goes_in_chunks_no_further_ahead_than_the_window(
    api: tuple[InProcessApi, dict[str, object]],
) -> None:
    local, _ = api
    frames, window = Frames(), Window()
    serving = asyncio.create_task(local.serve(request(5, "GET", "/v1/stream"), CIMultiDict(), window, frames.send))
    await wait_until(lambda: len(frames.body()) > wire.WINDOW - wire.MAX_CHUNK)
    for _ in range(10):  # it is parked on the window: letting it run sends nothing more
        await asyncio.sleep(0)
    held = len(frames.body())
    assert wire.WINDOW - wire.MAX_CHUNK < held <= wire.WINDOW  # stopped at the window: the rest waits
    assert isinstance(frames.sent[0], wire.Head) and dict(frames.sent[0].headers)["Content-Type"] == "text/event-stream"
    while not serving.done():
        window.grant(wire.WINDOW)
        await asyncio.sleep(0)
    await serving
    assert frames.body() == CHUNK * 1000
    assert all(len(f.chunk) <= wire.MAX_CHUNK for f in frames.sent if isinstance(f, wire.Data))
    assert isinstance(frames.sent[-1], wire.End) and frames.sent[-1].stream == 5


async def test_a_cancelled_request_cancels_the_handler(api: tuple[InProcessApi, dict[str, object]]) -> None:
    local, seen = api
    frames = Frames()
    serving = asyncio.create_task(local.serve(request(7, "GET", "/v1/stream"), CIMultiDict(), Window(), frames.send))
    await wait_until(lambda: len(frames.body()) > 0)  # streaming, then parked on the window
    serving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await serving
    assert seen["cancelled"] is True
    assert not any(isinstance(f, wire.End) for f in frames.sent)
