"""A tunnelled stand-in worker: registers with a gateway and serves a local server through a tunnel.

``python bench/tunnel_peer.py GATEWAY_URL LOCAL_URL``: the local server (e.g.
bench/standin_upstream.py) is reached only through the tunnel this process
opens to the gateway, as a worker behind NAT would. The join token comes
from $INFERCDN_WORKER_JOIN_TOKEN. For bench/tunnel.py.
"""

from __future__ import annotations

import asyncio
import os
import sys

import aiohttp

from edge_worker.announcer import Announcer
from edge_worker.tunnel import TunnelClient
from routing.announce import Hardware, Heartbeat, Registration
from routing.fleet import TUNNEL, ModelOffer
from routing.identity import Identity
from routing.quantization import Quantization
from routing.signing import Signer

WORKER_ID = "tunnelled-standin"
OFFER = ModelOffer("bench-model", Quantization("Q4_1", 4, "int4"), 4096, "llama.cpp")


async def serve(gateway: str, local_url: str) -> None:
    signer = Signer(Identity.generate(), WORKER_ID, os.environ["INFERCDN_WORKER_JOIN_TOKEN"])
    registration = Registration(WORKER_ID, local_url, "", "llama.cpp", Hardware(), 64, (OFFER,), via=TUNNEL)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        client = TunnelClient(gateway, WORKER_ID, signer, session, local_url)
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
    asyncio.run(serve(sys.argv[1], sys.argv[2]))
