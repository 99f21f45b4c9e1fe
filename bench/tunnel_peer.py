"""A tunnelled stand-in worker: registers with a gateway and serves a stand-in model server through a tunnel.

``python bench/tunnel_peer.py GATEWAY_URL standin`` (bench/standin_upstream.py's
instant answers) or ``GATEWAY_URL firehose MEGABYTES`` (bench/firehose_upstream.py):
the stand-in runs in this process and is reached only through the tunnel this
process opens to the gateway, as a worker behind NAT serves its own API (on
asyncio's own loop, as the worker runs; the dialled stand-in has uvloop). The
join token comes from $INFERCDN_WORKER_JOIN_TOKEN. For bench/tunnel.py.
"""

from __future__ import annotations

import asyncio
import os
import sys

import aiohttp
from aiohttp import web

from bench.firehose_upstream import firehose
from bench.standin_upstream import chat, standin_app
from edge_worker.announcer import Announcer
from edge_worker.tunnel import TunnelClient
from routing.announce import Hardware, Heartbeat, Registration
from routing.fleet import TUNNEL, ModelOffer
from routing.identity import Identity
from routing.in_process import InProcessApi
from routing.quantization import Quantization
from routing.signing import Signer

WORKER_ID = "tunnelled-standin"
OFFER = ModelOffer("bench-model", Quantization("Q4_1", 4, "int4"), 4096, "llama.cpp")
NOWHERE = "http://127.0.0.1:9"  # a tunnelled worker's address is never dialled


async def serve(gateway: str, app: web.Application) -> None:
    signer = Signer(Identity.generate(), WORKER_ID, os.environ["INFERCDN_WORKER_JOIN_TOKEN"])
    registration = Registration(WORKER_ID, NOWHERE, "", "llama.cpp", Hardware(), 64, (OFFER,), via=TUNNEL)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()  # freezes the app and runs its startup, as a server would; no socket
    async with aiohttp.ClientSession() as session:
        client = TunnelClient(gateway, WORKER_ID, signer, session, InProcessApi(app))
        announcer = Announcer(
            (gateway,),
            signer,
            session,
            registration,
            lambda: Heartbeat(WORKER_ID, 0, 0),
            trust=lambda key: None,
            on_registered=lambda g: client.registered.set(),
        )
        announcer.start()
        await client.run()


if __name__ == "__main__":
    handler = firehose(float(sys.argv[3])) if sys.argv[2] == "firehose" else chat
    asyncio.run(serve(sys.argv[1], standin_app(handler)))
