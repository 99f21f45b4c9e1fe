"""A reference for vLLM workers: the same Hugging Face directory, served by a vLLM the operator trusts.

A vLLM worker's offer names its model directory by digest
(``edge_worker.runtimes.vllm.weights_digest``); this reference holds a copy
with that digest, served by vLLM, and checks an answer with vLLM's own
endpoints:

- ``/tokenize`` renders the client's request with the model's template: the
  worker's prompt ids must be these;
- ``/detokenize``: the completion ids must spell what the client was sent;
- ``/v1/completions`` with the prompt and completion ids as the prompt and
  ``prompt_logprobs``: teacher forcing in one prefill, giving each token's
  log-probability and the likeliest one's, so its gap ``max log p - log
  p(chosen)``.

vLLM returns the top log-probabilities (``top_logprobs`` of them: its own
vLLM is started with ``--max-logprobs`` to match), not the whole distribution.
That gives a greedy answer's gaps, and a sampled answer's Z over the likeliest
tokens (``edge_worker.verifier.top_logprobs_z``), as long as no top-p cut
needs every token's probability (``routing.verification.scorable``) and the
model directory's generation config sets nothing the request leaves open
(``edge_worker.verifier.generation_defaults``). The more tokens listed, the
more of a cheat's unlikely draws are seen one by one rather than as "any
other": a vLLM serving the Q2_K requantization scored a mean Z per check of
-0.13 at 20, -1.06 at 100, -1.61 at 300 and -2.18 at 1,000, while the check
cost 1.0, 1.0, 1.25 and 1.5 times the serving (``bench.trust_vllm``; README).
300 is the least of those that convicts within 50 checks with P > 0.99.

The verifier either attaches to a vLLM the operator runs (``attach``) or starts
and supervises its own on a private loopback port, as a worker does
(``supervise``, with the worker's ``VllmProcess``): while that vLLM is down or
starting again, checks are refused as busy (the gateway drops them, counted),
never scored against nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from edge_worker.runtimes.vllm.process import VllmProcess
from edge_worker.runtimes.vllm.weights_digest import directory_digest
from edge_worker.verifier.delivery import delivered
from edge_worker.verifier.generation_defaults import GenerationDefaults
from edge_worker.verifier.scoring import largest_gaps
from edge_worker.verifier.top_logprobs_z import Listed, TopLogprobsZ
from routing.errors import Busy, InvalidRequest
from routing.openai_requests import GenerationRequest, parse_chat_request, parse_completion_request
from routing.verification import IMPOSSIBLE_GAP, Score, ScoreRequest, scorable

log = logging.getLogger(__name__)

_TIMEOUT = aiohttp.ClientTimeout(total=120, connect=10)
HEALTH_POLL_S = 5.0  # how often a supervised vLLM's /health is asked
# The likeliest tokens a sampled check reads per position (vLLM's own default allows 20).
DEFAULT_TOP_LOGPROBS = 300
# Request fields the template reads besides the messages (vLLM's names).
_TEMPLATE_FIELDS = ("chat_template_kwargs", "continue_final_message", "add_generation_prompt")


class VllmReference:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str | None,
        model: str,
        sha256: str,
        defaults: GenerationDefaults | None = None,
        top_logprobs: int = DEFAULT_TOP_LOGPROBS,
    ):
        self._session = session
        self._url = None if url is None else url.rstrip("/")  # None: a supervised vLLM that is not up
        self.model = model  # vLLM's name for it
        self.sha256 = sha256
        self.defaults = defaults or GenerationDefaults()  # what its directory may make a vLLM sample with
        self.top_logprobs = top_logprobs
        self._up = asyncio.Event()
        self._process: VllmProcess | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None

    @property
    def url(self) -> str | None:
        """Where its vLLM answers now (None while a supervised one is down)."""
        return self._url

    @classmethod
    async def attach(cls, url: str, folder: Path, top_logprobs: int = DEFAULT_TOP_LOGPROBS) -> VllmReference:
        """To the vLLM at ``url`` serving ``folder`` (waits for it to answer; sampled checks need it started
        with ``--max-logprobs`` of at least ``top_logprobs``, else vLLM refuses them and they are dropped)."""
        session = aiohttp.ClientSession(timeout=_TIMEOUT)
        try:
            sha256 = await asyncio.to_thread(directory_digest, folder)
            defaults = await asyncio.to_thread(GenerationDefaults.read, folder)
            model = await _served_model(session, url.rstrip("/"))
        except BaseException:
            await session.close()
            raise
        return cls(session, url, model, sha256, defaults, top_logprobs)

    @classmethod
    async def supervise(
        cls,
        folder: Path,
        launcher: Sequence[str],
        args: Sequence[str],
        hung_restart_s: float = 60.0,
        top_logprobs: int = DEFAULT_TOP_LOGPROBS,
    ) -> VllmReference:
        """Start a vLLM serving ``folder`` (``launcher``, then vLLM's own ``args``, with ``--max-logprobs`` for
        ``top_logprobs`` unless they set it), keep it running (started again if it exits, or if its ``/health``
        stays silent ``hung_restart_s``), and wait until it first answers."""
        sha256 = await asyncio.to_thread(directory_digest, folder)  # first: no session to leak if it fails
        defaults = await asyncio.to_thread(GenerationDefaults.read, folder)
        reference = cls(aiohttp.ClientSession(timeout=_TIMEOUT), None, "", sha256, defaults, top_logprobs)
        session = reference._session
        if not any(a == "--max-logprobs" or a.startswith("--max-logprobs=") for a in args):
            args = [*args, "--max-logprobs", str(top_logprobs)]

        def command(port: int) -> list[str]:
            return [*launcher, "--model", str(folder), "--host", "127.0.0.1", "--port", str(port), *args]

        reference._process = VllmProcess(command, on_change=reference._server_changed)
        reference._supervisor = supervisor = asyncio.create_task(reference._process.run())
        up = asyncio.create_task(reference._up.wait())
        try:
            await asyncio.wait((up, supervisor), return_when=asyncio.FIRST_COMPLETED)
            if supervisor.done():  # the supervisor itself failed (it restarts vLLM forever otherwise)
                supervisor.result()
                raise OSError("the vLLM supervisor ended")
            if reference._url is None:
                raise OSError("the reference's vLLM stopped as soon as it was up")
            reference.model = await _served_model(session, reference._url)
        except BaseException:
            up.cancel()
            await reference.close()
            raise
        reference._watcher = asyncio.create_task(reference._restart_when_hung(reference._process, hung_restart_s))
        return reference

    async def _restart_when_hung(self, process: VllmProcess, hung_restart_s: float) -> None:
        """A vLLM that is up but does not answer (hung) is ended; its supervisor starts it again."""
        answered = time.monotonic()
        while True:
            await asyncio.sleep(min(HEALTH_POLL_S, hung_restart_s / 4))
            url = self._url
            if url is None or await self._answers_health(url, hung_restart_s / 4):
                answered = time.monotonic()
            elif time.monotonic() - answered >= hung_restart_s:
                log.error("the reference's vLLM has not answered for %.0f s: restarting it", hung_restart_s)
                await process.restart()
                answered = time.monotonic()

    async def _answers_health(self, url: str, timeout_s: float) -> bool:
        try:
            async with self._session.get(url + "/health", timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    def _server_changed(self, url: str | None) -> None:
        if url is None:
            if self._url is not None:
                log.warning("the reference's vLLM is down: checks are refused until it is back")
            self._up.clear()
        else:
            self._up.set()
        self._url = url

    async def score(self, job: ScoreRequest) -> Score:
        request = _parsed(job.request)
        if not scorable("vllm", job.request, request):
            raise InvalidRequest("a vLLM reference scores answers without top-p, penalties, tools or schemas")
        temperature = request.sampling.temperature
        unstated = self.defaults.unstated(job.request) if temperature > 0 else None
        if unstated:
            raise InvalidRequest(f"a sampled answer this reference cannot know the sampler of: {unstated}")
        prompt = await self._tokenize(job.request)
        text = await self._post("/detokenize", {"model": self.model, "tokens": list(job.completion)})
        targets = list(job.completion) + ([job.end_token] if job.end_token is not None else [])
        top = 1 if temperature <= 0 else self.top_logprobs
        rows = await self._rows(list(job.prompt), targets, top)
        # Hundreds of listed tokens a position (sampled): read off the event loop.
        largest, z = await asyncio.to_thread(_read, rows, targets, temperature, top)
        return Score(
            prompt_matches=prompt == list(job.prompt),
            text_matches=isinstance(text.get("prompt"), str) and delivered(text["prompt"], job, request),
            tokens=len(targets),
            max_gap=largest[0][1] if largest else 0.0,
            max_gap_at=largest[0][0] if largest else 0,
            largest_gaps=largest,
            z=z,
            greedy=temperature <= 0,
        )

    async def _tokenize(self, body: dict[str, Any]) -> list[int]:
        ask: dict[str, Any] = {"model": self.model}
        if "messages" in body:
            ask["messages"] = body["messages"]
            ask["add_generation_prompt"] = True
            ask.update({k: body[k] for k in _TEMPLATE_FIELDS if k in body})
        else:
            ask["prompt"] = body.get("prompt")
        tokens = (await self._post("/tokenize", ask)).get("tokens")
        return tokens if isinstance(tokens, list) else []

    async def _rows(self, prompt: list[int], targets: list[int], top: int) -> list[Any]:
        """Each target's row of prompt logprobs (its own and the ``top`` likeliest), from one prefill."""
        if not targets:
            return []
        ask = {
            "model": self.model,
            "prompt": prompt + targets,
            "max_tokens": 1,
            "temperature": 0,
            "prompt_logprobs": top,
        }
        answer = await self._post("/v1/completions", ask)
        try:
            rows = answer["choices"][0]["prompt_logprobs"]
            return [rows[len(prompt) + i] for i in range(len(targets))]
        except (KeyError, IndexError, TypeError) as exc:
            raise Busy(f"vLLM's prompt logprobs were not as expected ({exc!r})", retry_after_s=1) from None

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = self._url
        if url is None:
            raise Busy("the reference's vLLM is starting again", retry_after_s=5)
        try:
            async with self._session.post(url + path, json=body) as resp:
                answer = await resp.json(content_type=None)
                if resp.status == 400:
                    message = answer.get("error", {}).get("message", "") if isinstance(answer, dict) else ""
                    raise InvalidRequest(f"vLLM refused the check: {message}"[:500])
                if resp.status != 200 or not isinstance(answer, dict):
                    raise Busy(f"vLLM answered {resp.status}", retry_after_s=1)
                return answer
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise Busy(f"vLLM is not answering ({type(exc).__name__})", retry_after_s=1) from None

    async def close(self) -> None:
        """Stops a supervised vLLM (and waits for it to exit)."""
        for task in (self._watcher, self._supervisor):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._session.close()


def _gap(row: Any, token: int) -> float:
    """``max log p - log p(token)`` at one position; vLLM lists the token's own and the likeliest."""
    if not isinstance(row, dict) or str(token) not in row:
        return IMPOSSIBLE_GAP
    chosen = float(row[str(token)]["logprob"])
    best = max(float(entry["logprob"]) for entry in row.values())
    return min(IMPOSSIBLE_GAP, max(0.0, best - chosen)) if chosen > float("-inf") else IMPOSSIBLE_GAP


def _read(
    rows: list[Any], targets: list[int], temperature: float, top: int
) -> tuple[tuple[tuple[int, float], ...], float | None]:
    """The largest gaps and, for a sampled answer, its Z, from each target's row (blocking)."""
    if not all(_well_formed(row, ranked=top > 1) for row in rows):
        raise Busy("vLLM's prompt logprobs were not as expected (a malformed row)", retry_after_s=1)
    largest = largest_gaps([_gap(row, token) for row, token in zip(rows, targets, strict=True)])
    if temperature <= 0:
        return largest, None
    tally = TopLogprobsZ(temperature)
    for row, token in zip(rows, targets, strict=True):
        listed = _listed(row, token, top)
        if listed is not None:
            tally.add(listed)
    return largest, tally.z


def _well_formed(row: Any, *, ranked: bool) -> bool:
    """A row as vLLM writes one: token id → its log-probability (and, when ranks are read, its rank)."""
    return isinstance(row, dict) and all(
        isinstance(entry, dict)
        and isinstance(entry.get("logprob"), int | float)
        and (not ranked or isinstance(entry.get("rank"), int))
        for entry in row.values()
    )


def _listed(row: dict[str, Any], token: int, top: int) -> Listed | None:
    """One position for a sampled answer's Z (None: vLLM did not list the token, whose gap says so already)."""
    own = row.get(str(token))
    if own is None or not math.isfinite(own["logprob"]):
        return None
    likeliest = tuple(float(e["logprob"]) for e in row.values() if e["rank"] <= top and math.isfinite(e["logprob"]))
    return Listed(likeliest, float(own["logprob"]), own["rank"] <= top)


async def _served_model(session: aiohttp.ClientSession, url: str, attempts: int = 600) -> str:
    for attempt in range(attempts):
        try:
            async with session.get(url + "/v1/models") as resp:
                if resp.status == 200:
                    cards = (await resp.json())["data"]
                    return str(cards[0]["id"])
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, IndexError):
            pass
        if attempt % 30 == 0:
            log.info("waiting for vLLM at %s", url)
        await asyncio.sleep(1)
    raise OSError(f"no vLLM answers at {url}")


def _parsed(body: dict[str, Any]) -> GenerationRequest:
    parse = parse_chat_request if "messages" in body else parse_completion_request
    return parse(body)
