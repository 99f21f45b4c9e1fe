"""A Consul worker's usage receipts: it sends gateways no heartbeats, so it asks each for them.

Every ``interval_s`` it asks each gateway found in Consul (signed with its
key, like every control message) for the receipts after the last one it
kept from that gateway, and keeps what comes back in its receipt book
(checked against that gateway's key), as heartbeat answers do for
registered workers.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp

from edge_worker.announcer import MAX_ANSWER_BYTES
from edge_worker.receipt_book import ReceiptBook
from routing.announce import CONTENT_TYPE, ReceiptsAsk, pack, receipts_path, unpack_heartbeat_answer
from routing.errors import InvalidRequest
from routing.gateway_presence import FoundGateway
from routing.identity import to_text
from routing.signing import Signer

log = logging.getLogger(__name__)


class ReceiptFetcher:
    def __init__(
        self,
        worker_id: str,
        signer: Signer,
        session: aiohttp.ClientSession,
        book: ReceiptBook,
        *,
        interval_s: float = 10.0,
    ):
        self._worker_id = worker_id
        self._signer = signer
        self._session = session
        self._book = book
        self._interval_s = interval_s
        self._gateways: dict[str, bytes] = {}  # url → its key
        self._failing: set[str] = set()  # gateways already warned about

    def add(self, gateway: FoundGateway) -> None:
        self._gateways[gateway.url] = gateway.key

    async def run(self) -> None:
        while True:
            for url, key in list(self._gateways.items()):
                await self.fetch(url, key)
            await asyncio.sleep(self._interval_s)

    async def fetch(self, gateway: str, key: bytes) -> int:
        """Ask one gateway for what it owes; how many new receipts were kept."""
        path = receipts_path(self._worker_id)
        body = pack(ReceiptsAsk(self._worker_id, self._book.cursor(to_text(key))))
        headers = {"Content-Type": CONTENT_TYPE, **self._signer.headers("POST", path, body, time.time())}
        try:
            async with self._session.post(
                gateway + path, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=10)
            ) as resp:
                if resp.status == 204:
                    return 0
                if resp.status != 200 or resp.content_length is None or resp.content_length > MAX_ANSWER_BYTES:
                    raise InvalidRequest(f"answered {resp.status}")
                answer = unpack_heartbeat_answer(await resp.read())
        except (aiohttp.ClientError, TimeoutError, InvalidRequest) as exc:
            if gateway not in self._failing:
                log.warning("could not fetch receipts from %s: %s", gateway, exc)
                self._failing.add(gateway)
            return 0
        self._failing.discard(gateway)
        return await self._book.accept(key, answer.receipts)
