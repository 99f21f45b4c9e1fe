"""An upstream that streams as fast as it may: a long SSE answer to every chat request.

``python bench/firehose_upstream.py PORT MEGABYTES``: each streaming chat
completion is MEGABYTES of 16 KiB text events, written as fast as the reader
takes them (aiohttp waits for the transport to drain), then ``[DONE]``. For
bench/tunnel.py's slow readers: what a proxy holds for a client that reads
slower than the worker writes.
"""

from __future__ import annotations

import json
import sys

from aiohttp import web

from bench.standin_upstream import Handler, serve

EVENT = ("data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": "x" * 16_000}}]}) + "\n\n").encode()


def firehose(megabytes: float) -> Handler:
    async def answer(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            for _ in range(int(megabytes * 1_000_000) // len(EVENT)):
                await resp.write(EVENT)
            await resp.write(b"data: [DONE]\n\n")
        except ConnectionError:
            pass  # the reader left (the bench stops its readers mid-stream)
        return resp

    return answer


if __name__ == "__main__":
    serve(firehose(float(sys.argv[2])))
