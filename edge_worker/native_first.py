"""llama.cpp's native libraries are loaded before numpy's, where llama-cpp-python is installed.

On a lent H100 machine a CUDA build of llama-cpp-python (0.3.36, CUDA 13, built with OpenMP)
segfaulted loading any model when numpy (2.5.2) had been imported first; with ``llama_cpp``
imported first it served and scored normally. ``edge_worker`` imports this module before any of its
modules imports numpy. Without llama-cpp-python (a vLLM-only host) it does nothing.
"""

from __future__ import annotations

import contextlib

with contextlib.suppress(ImportError):
    import llama_cpp.llama_cpp  # noqa: F401  (the ctypes bindings: they load libllama and libggml)
