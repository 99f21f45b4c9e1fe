from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.servers import Server, running

MODEL = "smollm2-135m-instruct"


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
