"""A verifier given a model directory and no ``vllm_url`` starts its own vLLM, keeps it running, and stops it.

The vLLM here is the stand-in (``tests/edge_worker/runtimes/vllm/fake_vllm.py``: the main suite does not
install vLLM's 3.5 GB CPU build); what is tested is the supervision. Scoring through a real, supervised
vLLM is in ``tests/edge_worker/runtimes/vllm/test_vllm_audits.py`` (``make test-vllm``).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from edge_worker.runtimes.vllm.weights_digest import directory_digest
from edge_worker.verifier.app import REFERENCE, create_app
from edge_worker.verifier.config import VerifierConfig
from edge_worker.verifier.vllm_reference import VllmReference
from routing.errors import Busy
from routing.verification import ScoreRequest
from tests.waiting import wait_until

FAKE = Path(__file__).parents[1] / "runtimes" / "vllm" / "fake_vllm.py"
KEY = "verifier-key-0123456789abcdef"
GREEDY = ScoreRequest({"model": "smol", "prompt": "Hi", "temperature": 0}, (1, 2), (3,), None, "x")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_it_starts_its_vllm_refuses_checks_while_that_is_down_and_stops_it_on_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "vllm-state"
    monkeypatch.setenv("FAKE_VLLM_STATE", str(state))
    folder = tmp_path / "SmolLM2"
    folder.mkdir()
    (folder / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    config = VerifierConfig(
        model=str(folder),
        key=KEY,
        vllm_launcher=(sys.executable, str(FAKE)),
        vllm_args=("--served-model-name", "smol"),
        vllm_top_logprobs=300,
    )
    server = TestServer(create_app(config), host="127.0.0.1")
    await server.start_server()  # returns once its vLLM answers
    try:
        reference = server.app[REFERENCE]
        assert isinstance(reference, VllmReference)
        assert reference.model == "smol" and reference.sha256 == directory_digest(folder)
        # Started to allow as many top log-probabilities as a sampled check asks for (vLLM's default: 20).
        argv = json.loads((state / "argv").read_text())
        assert argv[argv.index("--max-logprobs") + 1] == "300" and reference.top_logprobs == 300
        first = int((state / "pid").read_text())
        assert reference.url is not None and alive(first)

        os.kill(first, signal.SIGKILL)  # vLLM dies: checks are refused as busy, not scored against nothing
        await wait_until(lambda: reference.url is None)
        with pytest.raises(Busy, match="starting again"):
            await reference.score(GREEDY)

        await wait_until(lambda: reference.url is not None, 30)  # started again, after its backoff
        assert int((state / "pid").read_text()) != first
    finally:
        second = int((state / "pid").read_text())
        await server.close()
    assert not alive(second)  # closing the verifier stopped its vLLM


async def test_a_hung_vllm_is_restarted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "vllm-state"
    monkeypatch.setenv("FAKE_VLLM_STATE", str(state))
    folder = tmp_path / "SmolLM2"
    folder.mkdir()
    (folder / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    launcher = (sys.executable, str(FAKE))
    reference = await VllmReference.supervise(folder, launcher, (), hung_restart_s=1.0)
    try:
        first = (state / "pid").read_text()
        (state / "hang").write_text(first)  # its /health never answers again, though the process lives
        await wait_until(lambda: (state / "pid").read_text() != first, 60)
        await wait_until(lambda: reference.url is not None)
    finally:
        await reference.close()


async def test_a_directory_with_no_model_files_is_a_clear_error_and_nothing_is_left_open(tmp_path: Path) -> None:
    env = {**os.environ, "INFERCDN_VERIFIER_KEY": KEY, "INFERCDN_VERIFIER_VLLM_LAUNCHER": f"{sys.executable},{FAKE}"}
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge_worker.verifier", "--model", str(tmp_path), "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
    )  # fmt: skip
    out = (await asyncio.wait_for(cli.communicate(), timeout=60))[0].decode()
    assert cli.returncode == 1, out
    assert f"no model files in {tmp_path}" in out
    assert "Traceback" not in out and "Unclosed" not in out
