"""GPU offload: how many of a model's layers llama.cpp keeps on a GPU, for hosts with one.

llama-cpp-python from PyPI is built for the CPU; a host with a GPU installs a CUDA, ROCm, Metal or
Vulkan build. Asking a CPU build to offload would load on the CPU without a word, at a fraction of
the speed the host expects, so it is refused at start.
"""

from __future__ import annotations

from edge_worker.runtimes.llama_cpp.catalog import ModelFileError

ALL_LAYERS = -1


class GpuOffloadUnavailable(ModelFileError):
    """``gpu_layers`` is set, and this llama-cpp-python build has no GPU backend."""


def gpu_layers_for_llama(gpu_layers: int) -> int:
    """llama.cpp's ``n_gpu_layers`` for a ``gpu_layers`` setting (0: none, -1: all), checked against the build."""
    if gpu_layers == 0:
        return 0
    import llama_cpp as lc

    if not lc.llama_supports_gpu_offload():
        raise GpuOffloadUnavailable(
            f"gpu_layers is {gpu_layers}, but this llama-cpp-python build cannot offload to a GPU: install a "
            "CUDA, ROCm, Metal or Vulkan build of it, or set gpu_layers = 0"
        )
    return gpu_layers
