"""What the rest of the worker needs from a runtime backend (llama.cpp in-process, or vLLM)."""

from __future__ import annotations

import asyncio
from typing import Protocol

from aiohttp import web

from routing.fleet import Load, ModelOffer


class Backend(Protocol):
    runtime: str
    capacity: int  # generations at once, as announced
    ready: asyncio.Event  # set once it can serve (announcers wait for it)

    def offers(self) -> tuple[ModelOffer, ...]: ...

    def load(self) -> Load: ...


BACKEND = web.AppKey("backend", Backend)
