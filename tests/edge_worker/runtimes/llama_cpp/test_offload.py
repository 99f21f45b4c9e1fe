"""``gpu_layers``: a CPU build of llama-cpp-python (PyPI's, which the tests run on) refuses it at start,
with the setting named and no traceback, in the worker and in the verifier alike."""

from __future__ import annotations

import asyncio
import os
import sys

import llama_cpp as lc
import pytest

from edge_worker.config import WorkerConfig
from edge_worker.runtimes.llama_cpp.catalog import bundled_model_path
from edge_worker.runtimes.llama_cpp.offload import GpuOffloadUnavailable, gpu_layers_for_llama
from edge_worker.verifier.config import VerifierConfig
from routing.settings import ConfigError, load_settings

MODEL = bundled_model_path()

CPU_BUILD = "these tests run on PyPI's CPU build of llama-cpp-python"


def test_no_gpu_layers_needs_no_gpu_and_any_on_a_cpu_build_is_refused() -> None:
    assert not lc.llama_supports_gpu_offload(), CPU_BUILD
    assert gpu_layers_for_llama(0) == 0
    for layers in (-1, 12):
        with pytest.raises(GpuOffloadUnavailable, match=f"gpu_layers is {layers}, but this llama-cpp-python build"):
            gpu_layers_for_llama(layers)


async def command(*argv: str, **env: str) -> tuple[int, str]:
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env={**os.environ, **env},
    )  # fmt: skip
    out, _ = await asyncio.wait_for(cli.communicate(), timeout=120)
    return cli.returncode or 0, out.decode()


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (("edge_worker", "--port", "0", "--model", str(MODEL), "--gpu-layers", "-1"), {}),
        (
            ("edge_worker.verifier", "--port", "0", "--model", str(MODEL), "--gpu-layers", "-1"),
            {"INFERCDN_VERIFIER_KEY": "a-verifier-key-of-enough-length"},
        ),
    ],
    ids=["worker", "verifier"],
)
async def test_a_cpu_build_with_gpu_layers_set_stops_with_a_clear_error(
    argv: tuple[str, ...], env: dict[str, str]
) -> None:
    assert not lc.llama_supports_gpu_offload(), CPU_BUILD
    status, out = await command(*argv, **env)
    assert status == 1, out
    assert "gpu_layers is -1, but this llama-cpp-python build cannot offload to a GPU" in out
    assert "Traceback" not in out


def test_gpu_layers_below_minus_one_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"worker\.gpu_layers"):
        load_settings(WorkerConfig, section="worker", toml={"worker": {"gpu_layers": -2}})
    with pytest.raises(ConfigError, match=r"verifier\.gpu_layers"):
        load_settings(
            VerifierConfig,
            section="verifier",
            toml={"verifier": {"gpu_layers": -2, "model": str(MODEL), "key": "a-verifier-key-of-enough-length"}},
        )
