"""A worker that answers every completion with a body that never ends.

``python bench/misbehaving_upstream.py PORT``: /v1/models and /health as the
instant stand-in; /v1/chat/completions sends headers at once, then JSON-looking
bytes (``{"choices": ["xxxx…``) as fast as the gateway reads them, forever.
"""

from __future__ import annotations

from aiohttp import web

from bench.standin_upstream import serve

FILLER = b"x" * 65536


async def endless(request: web.Request) -> web.StreamResponse:
    await request.read()
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    try:
        await response.write(b'{"choices": ["')
        while True:
            await response.write(FILLER)
    except ConnectionError:  # the gateway gave up on it, as it should
        return response


def main() -> None:
    serve(endless)


if __name__ == "__main__":
    main()
