"""llama.cpp's native libraries load before numpy's in every command that loads a model (a CUDA build
segfaulted on a lent GPU machine when numpy came first: ``edge_worker/native_first.py``)."""

from __future__ import annotations

import subprocess
import sys

import pytest

ORDER = """
import sys
import {entry}
import edge_worker.runtimes.llama_cpp, edge_worker.verifier.reference  # what loading a model imports
names = list(sys.modules)
print(names.index("llama_cpp.llama_cpp") < names.index("numpy"))
"""


@pytest.mark.parametrize("entry", ["edge_worker.cli", "edge_worker.verifier.cli", "gateway.cli", "gateway.up"])
def test_llama_cpp_loads_before_numpy(entry: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", ORDER.format(entry=entry)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
