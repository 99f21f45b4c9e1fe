"""Background loops that die are logged and started again, with a growing backoff; the sleep is injected."""

from __future__ import annotations

import asyncio
import logging

import pytest

from routing.supervise import supervised


async def test_a_loop_that_dies_is_logged_and_restarted_with_backoff(caplog: pytest.LogCaptureFixture) -> None:
    runs: list[int] = []
    backoffs: list[float] = []
    done = asyncio.Event()

    async def flaky() -> None:
        runs.append(len(runs))
        if len(runs) <= 3:
            raise ValueError(f"bad value from a worker #{len(runs)}")  # e.g. a malformed Consul entry
        done.set()
        await asyncio.Event().wait()  # then runs until cancelled

    async def no_wait(seconds: float) -> None:
        backoffs.append(seconds)

    with caplog.at_level(logging.ERROR, logger="routing.supervise"):
        task = asyncio.create_task(supervised("Consul watch", flaky, min_backoff_s=0.5, sleep=no_wait))
        await asyncio.wait_for(done.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert len(runs) == 4
    assert backoffs == [0.5, 1.0, 2.0]
    died = [r for r in caplog.records if "Consul watch died" in r.getMessage()]
    assert len(died) == 3 and died[0].exc_info is not None  # with its traceback
