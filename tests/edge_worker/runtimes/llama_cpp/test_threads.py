"""How many threads generation gets: every usable core by default, never llama.cpp's own default of 4."""

from __future__ import annotations

import os

import llama_cpp as lc
import pytest

from edge_worker.config import WorkerConfig
from edge_worker.runtimes.llama_cpp import generation_threads
from edge_worker.runtimes.llama_cpp.catalog import bundled_model_path
from edge_worker.runtimes.llama_cpp.engine import BatchEngine
from edge_worker.runtimes.llama_cpp.model import load_llama


def test_the_default_is_every_core_this_process_may_use() -> None:
    assert generation_threads(WorkerConfig()) == len(os.sched_getaffinity(0))
    assert generation_threads(WorkerConfig(threads=3)) == 3


@pytest.mark.parametrize("threads", [1, 3])
def test_the_engine_context_runs_on_the_threads_it_was_given(threads: int) -> None:
    llm, _ = load_llama(bundled_model_path(), context_length=256, threads=threads, max_context=256)
    engine = BatchEngine(llm, slots=1, context_per_slot=256, threads=threads)
    try:
        assert lc.llama_n_threads(engine._ctx) == lc.llama_n_threads_batch(engine._ctx) == threads
    finally:
        engine.close()
        llm.close()
