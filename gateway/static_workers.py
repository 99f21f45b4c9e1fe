"""Static upstreams: the worker URLs in the config, read for what they serve.

Each round reads every worker's ``/v1/models`` and hands its offers to the
balancer as an ``Upsert``. Reachability is the prober's and the proxy's business: a worker that
does not answer here keeps its offers, so its model stays known.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import replace

import aiohttp

from routing.balancer import Balancer
from routing.discovery import Upsert
from routing.errors import InvalidRequest
from routing.fleet import Worker, authorization, describe_offers
from routing.settings import ConfigError
from routing.upstreams import UpstreamSpec
from routing.wire import PLAIN_RUNTIME, offers_from_models_list

log = logging.getLogger(__name__)


def parse_static_worker(spec: str, env: Mapping[str, str]) -> tuple[str, str]:
    """``URL [key_env=VAR]``: the worker's base URL, and the access token it was given (its
    ``access_token`` setting), read from the environment variable VAR; ConfigError if unusable."""
    url, *options = spec.split()
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"gateway.workers: not an http(s) URL: {url!r}")
    bearer = ""
    for option in options:
        name, _, value = option.partition("=")
        if name != "key_env" or not value:
            raise ConfigError(f"gateway.workers: unknown option {option!r} (only key_env=VAR)")
        bearer = env.get(value, "")
        if not bearer:
            raise ConfigError(f"gateway.workers: environment variable {value} is empty or unset")
    return url.rstrip("/"), bearer


class StaticWorkers:
    def __init__(
        self,
        specs: tuple[str, ...],
        balancer: Balancer,
        session: aiohttp.ClientSession,
        *,
        timeout_s: float,
        env: Mapping[str, str],
    ):
        self._bearers = dict(parse_static_worker(spec, env) for spec in specs)
        self._urls = tuple(self._bearers)
        self._balancer = balancer
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.unreached: set[str] = set(self._urls)  # never answered yet

    def add_upstreams(self, specs: tuple[UpstreamSpec, ...]) -> None:
        """Servers whose offers the config declares: in the fleet at once, probed like any worker."""
        for spec in specs:
            worker = Worker(
                id=spec.url,
                url=spec.url,
                runtime="openai-compatible",
                source="upstream",
                bearer=spec.api_key,
                health_path=spec.health_path,
            )
            self._balancer.apply(Upsert(worker, spec.offers))
            log.info("upstream %s serves %s", spec.url, describe_offers(spec.offers))

    async def refresh(self) -> None:
        await asyncio.gather(*(self._refresh_one(url) for url in self._urls))

    async def run(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await self.refresh()

    async def _refresh_one(self, url: str) -> None:
        worker = Worker(id=url, url=url, bearer=self._bearers[url])
        try:
            headers = authorization(worker)
            async with self._session.get(f"{url}/v1/models", timeout=self._timeout, headers=headers) as resp:
                resp.raise_for_status()
                offers = offers_from_models_list(await resp.json())
        except (aiohttp.ClientError, TimeoutError, ValueError, InvalidRequest) as exc:
            if url in self.unreached:
                log.warning("worker %s has not answered yet: %s", url, exc or type(exc).__name__)
            return
        plain = bool(offers) and all(o.runtime == PLAIN_RUNTIME for o in offers)
        if plain:
            # Not every OpenAI server has /health (Ollama has not); every one lists its models.
            worker = replace(worker, runtime=PLAIN_RUNTIME, health_path="/v1/models")
        if self._balancer.apply(Upsert(worker, offers)):
            if plain:
                log.info(
                    "worker %s is a plain OpenAI-compatible server (no InferCDN fields): serves %s "
                    "(quantization read from the model names; it refuses what it cannot do itself)",
                    url,
                    describe_offers(offers),
                )
            else:
                log.info("worker %s serves %s", url, describe_offers(offers))
        self.unreached.discard(url)
