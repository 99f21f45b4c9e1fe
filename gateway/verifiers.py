"""The verifiers this gateway may send audits to, by the weights file each holds.

Each configured verifier (and each one found in Consul, ``VerifiersInConsul``)
is asked which file it holds (its SHA-256) at start and every ``refresh_s``;
an audit goes to a verifier holding the file the worker's offer names. A
verifier that does not answer is left out until it does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
import consul.aio

from gateway.answers import BadAnswer, read_bounded
from routing.consul_client import follow
from routing.errors import InferCDNError, InvalidRequest
from routing.json_limits import loads_bounded
from routing.verification import INFO_PATH, SCORE_PATH, Score, ScoreRequest, VerifierInfo
from routing.verifier_presence import SERVICE as VERIFIER_SERVICE
from routing.verifier_presence import verifier_url

log = logging.getLogger(__name__)

MAX_ANSWER_BYTES = 64 << 10


class VerifierUnavailable(InferCDNError):
    """No verifier answered the audit (down, busy, or an answer that is not a score)."""


class Verifiers:
    def __init__(self, session: aiohttp.ClientSession, urls: tuple[str, ...], key: str, *, timeout_s: float = 60.0):
        self._session = session
        self._urls = tuple(u.rstrip("/") for u in urls)
        self._found: tuple[str, ...] = ()  # from Consul, besides those configured
        self._headers = {"Authorization": f"Bearer {key}"}
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._by_digest: dict[str, str] = {}

    def url_for(self, sha256: str) -> str | None:
        return self._by_digest.get(sha256) if sha256 else None

    async def found_in_consul(self, urls: tuple[str, ...]) -> None:
        """The verifiers Consul lists now (proven): asked at once what they hold."""
        if urls != self._found:
            self._found = urls
            await self.refresh()

    async def refresh(self) -> None:
        found: dict[str, str] = {}
        for url in dict.fromkeys(self._urls + self._found):
            try:
                info = VerifierInfo.from_json(await self._call("GET", url + INFO_PATH, None))
            except (VerifierUnavailable, InvalidRequest) as exc:
                log.warning("verifier %s: %s", url, exc.message)
                continue
            found.setdefault(info.sha256, url)
        if found.keys() != self._by_digest.keys():
            log.info("verifiers hold %d weights file(s)", len(found))
        self._by_digest = found

    async def run(self, refresh_s: float = 30.0) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(refresh_s)

    async def score(self, url: str, job: ScoreRequest) -> Score:
        answer = await self._call("POST", url + SCORE_PATH, job.to_json())
        try:
            return Score.from_json(answer)
        except InvalidRequest as exc:
            raise VerifierUnavailable(f"not a score: {exc.message}") from None

    async def _call(self, method: str, url: str, body: object) -> object:
        try:
            async with self._session.request(
                method, url, json=body, headers=self._headers, timeout=self._timeout
            ) as response:
                payload = await read_bounded(response, MAX_ANSWER_BYTES)
                if response.status != 200:
                    raise VerifierUnavailable(f"answered {response.status}")
                return loads_bounded(payload)
        except (aiohttp.ClientError, TimeoutError, ValueError, BadAnswer) as exc:
            raise VerifierUnavailable(f"{type(exc).__name__}: {exc}") from None


class VerifiersInConsul:
    """The verifiers announced in Consul whose proof holds (``routing.verifier_presence``); one warning for each
    entry that does not."""

    def __init__(self, client: consul.aio.Consul, verifier_key: str, verifiers: Verifiers, *, wait_s: float = 30.0):
        self._client = client
        self._key = verifier_key
        self._verifiers = verifiers
        self._wait_s = wait_s
        self._warned: set[str] = set()

    async def run(self) -> None:
        await follow(self._passing, self._apply, meanwhile="audits go to the verifiers found so far")

    async def _passing(self, index: str | None) -> tuple[str | None, list[dict[str, Any]]]:
        answered, entries = await self._client.health.service(
            VERIFIER_SERVICE, index=index, wait=f"{self._wait_s:g}s", passing=True
        )
        return answered, entries or []

    async def _apply(self, entries: list[dict[str, Any]]) -> None:
        urls: list[str] = []
        for entry in entries:
            service = entry.get("Service") if isinstance(entry, dict) else None
            try:
                urls.append(verifier_url(service, self._key, time.time()))
            except InvalidRequest as exc:
                name = str(service.get("ID", "?"))[:200] if isinstance(service, dict) else "?"
                if name not in self._warned and len(self._warned) < 4096:
                    log.warning("ignoring verifier %s in Consul: %s", name, exc.message)
                    self._warned.add(name)
        await self._verifiers.found_in_consul(tuple(sorted(urls)))
