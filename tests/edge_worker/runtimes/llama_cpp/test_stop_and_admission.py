import asyncio

import pytest

from edge_worker.runtimes.llama_cpp.admission import Admission
from edge_worker.runtimes.llama_cpp.stop_scanner import StopScanner
from routing.errors import Busy


def test_stop_sequence_split_across_pieces_is_held_back_then_cut() -> None:
    scan = StopScanner(("END",))
    assert scan.feed("hello E") == ("hello ", False)
    assert scan.feed("N") == ("", False)
    assert scan.feed("D and more") == ("", True)


def test_false_start_of_a_stop_sequence_is_released() -> None:
    scan = StopScanner(("END",))
    assert scan.feed("E") == ("", False)
    assert scan.feed("X") == ("EX", False)
    assert scan.flush() == ""


def test_earliest_of_several_stops_wins() -> None:
    assert StopScanner(("b", "a")).feed("xxaxb") == ("xx", True)


async def test_admission_queues_then_refuses() -> None:
    admission = Admission(1, model="m")
    await admission.acquire()  # running
    waiter = asyncio.ensure_future(admission.acquire())
    await asyncio.sleep(0)
    assert admission.waiting == 1
    with pytest.raises(Busy) as caught:
        await admission.acquire()
    assert caught.value.headers()["Retry-After"].isdigit()
    admission.release(0.1)
    await waiter
    assert (admission.running, admission.waiting) == (1, 0)


async def test_cancelled_waiter_leaves_the_queue() -> None:
    admission = Admission(2, model="m")
    await admission.acquire()
    waiter = asyncio.ensure_future(admission.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert admission.waiting == 0
