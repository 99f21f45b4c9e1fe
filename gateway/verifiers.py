"""The verifiers this gateway may send audits to, by the weights file each holds.

Each configured verifier (and each one found in Consul)
is asked which file it holds (its SHA-256) at start and every ``refresh_s``;
an audit goes to a verifier holding the file the worker's offer names. A
verifier that does not answer is left out until it does.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from gateway.answers import BadAnswer, read_bounded
from routing.errors import InferCDNError, InvalidRequest
from routing.json_limits import loads_bounded
from routing.verification import INFO_PATH, SCORE_PATH, Score, ScoreRequest, VerifierInfo

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

    async def found_in_consul(self, urls: list[str]) -> None:
        """The verifiers Consul lists now (proven, ``routing.verifier_presence``): asked at once what they hold."""
        if tuple(sorted(urls)) != self._found:
            self._found = tuple(sorted(urls))
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
