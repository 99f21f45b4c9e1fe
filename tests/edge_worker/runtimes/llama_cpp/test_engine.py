"""The decode loop itself, on the bundled model: jobs that share a prompt read it once."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from edge_worker.runtimes.llama_cpp.catalog import bundled_model_path
from edge_worker.runtimes.llama_cpp.engine import BatchEngine, EngineStats, Job
from edge_worker.runtimes.llama_cpp.events import Finished, GenerationEvent, TextDelta
from edge_worker.runtimes.llama_cpp.model import load_llama
from edge_worker.runtimes.llama_cpp.sampler import SequenceSampler
from routing.openai_requests import Sampling

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle." * 3
OTHER = "List the planets of the solar system in order, with one fact about each."


class Computed:
    """Tokens the engine fed to llama_decode, as its stats report them."""

    def __init__(self) -> None:
        self.tokens = 0

    def add(self, n: int) -> None:
        self.tokens += n


@pytest.fixture(scope="module")
def llm() -> Iterator[Any]:
    model, _ = load_llama(bundled_model_path(), context_length=1024, threads=2, max_context=1024)
    yield model
    model.close()


@pytest.fixture
def computed() -> Computed:
    return Computed()


@pytest.fixture
def engine(llm: Any, computed: Computed) -> Iterator[BatchEngine]:
    engine = BatchEngine(llm, slots=4, context_per_slot=256, threads=2, stats=EngineStats(batch_tokens=computed.add))
    yield engine
    engine.close()


class Run:
    """One job and what it emitted."""

    def __init__(
        self, llm: Any, *, prompt: str = PROMPT, seed: int = 0, temperature: float = 0.0, cancelled: bool = False
    ):
        self.events: queue.SimpleQueue[GenerationEvent | BaseException] = queue.SimpleQueue()
        self.cancelled = threading.Event()
        if cancelled:
            self.cancelled.set()
        sampling = Sampling(max_tokens=16, temperature=temperature)
        self.job = Job(
            prompt=llm.tokenize(prompt.encode()),
            sampler=SequenceSampler(sampling, seed, llm._model.vocab),
            max_tokens=16,
            stops=(),
            cancelled=self.cancelled,
            emit=self.events.put,
            done=lambda: None,
        )

    def result(self) -> tuple[str, Finished]:
        text = []
        while True:
            event = self.events.get(timeout=60)
            if isinstance(event, BaseException):
                raise event
            if isinstance(event, Finished):
                return "".join(text), event
            assert isinstance(event, TextDelta)
            text.append(event.text)


def test_choices_of_one_prompt_read_it_once_and_each_samples_as_if_alone(
    llm: Any, engine: BatchEngine, computed: Computed
) -> None:
    alone = []
    for seed in (7, 8, 9):
        run = Run(llm, seed=seed, temperature=0.9)
        engine.submit(run.job)
        alone.append(run.result())
    fillers = [Run(llm, prompt=OTHER) for _ in range(4)]  # another prompt in every slot: no cache to reuse
    engine.submit(*(f.job for f in fillers))
    for filler in fillers:
        filler.result()
    prompt_tokens = alone[0][1].prompt_tokens
    computed.tokens = 0

    runs = [Run(llm, seed=seed, temperature=0.9) for seed in (7, 8, 9)]
    engine.submit(*(r.job for r in runs))
    together = [r.result() for r in runs]

    assert [text for text, _ in together] == [text for text, _ in alone]
    generated = sum(f.completion_tokens for _, f in together)
    # The prompt once (less what a slot had cached), then one token per choice per step.
    assert computed.tokens <= prompt_tokens + generated, (computed.tokens, prompt_tokens, generated)
    assert [f.cached_tokens for _, f in together] == [together[0][1].cached_tokens] * 3


def test_when_the_job_reading_a_shared_prompt_leaves_the_next_one_reads_it(llm: Any, engine: BatchEngine) -> None:
    alone = Run(llm)
    engine.submit(alone.job)
    expected, _ = alone.result()

    leaving, staying, also_staying = Run(llm, cancelled=True), Run(llm), Run(llm)
    engine.submit(leaving.job, staying.job, also_staying.job)
    assert staying.result()[0] == expected
    assert also_staying.result()[0] == expected
    assert leaving.events.empty()  # a job that left is told nothing more (its consumer is gone)
