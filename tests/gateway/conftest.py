"""Fixtures the gateway tests share: a client session, and gateways closed after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.gateway.standin import StandIn


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def gateways() -> AsyncIterator[list[TestServer]]:
    made: list[TestServer] = []
    yield made
    for g in made:
        await g.close()


@pytest.fixture
async def standins() -> AsyncIterator[list[StandIn]]:
    made: list[StandIn] = []
    yield made
    for s in made:
        await s.stop()
