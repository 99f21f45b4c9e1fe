"""A connection used from threads: a cancelled call still holds it until its thread is done."""

from __future__ import annotations

import asyncio
import threading

import pytest

from routing.sqlite_file import OneConnection, open_private
from tests.waiting import wait_until


async def test_close_waits_for_a_cancelled_calls_thread() -> None:
    connection = OneConnection(open_private(":memory:", "create table t (x integer);"))
    started, release = threading.Event(), threading.Event()
    errors: list[Exception] = []

    def slow_insert() -> None:
        started.set()
        release.wait(timeout=30)
        try:
            with connection.db:
                connection.db.execute("insert into t values (1)")
        except Exception as exc:  # a closed connection: what the fix prevents
            errors.append(exc)

    call = asyncio.create_task(connection.call(slow_insert))
    await wait_until(started.is_set)
    call.cancel()
    for _ in range(3):
        await asyncio.sleep(0)  # a turn of the loop (no timer): the cancellation is delivered
    assert not call.done()  # it keeps the connection while its thread runs
    closing = asyncio.create_task(connection.close())
    release.set()
    await closing
    with pytest.raises(asyncio.CancelledError):
        await call
    assert errors == []
