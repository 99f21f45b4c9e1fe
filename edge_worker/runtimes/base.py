"""What the rest of the worker needs from a runtime: llama.cpp in-process, or a supervised vLLM.

A runtime package exposes ``install(app, config, metrics)``: it adds its
generation routes and a cleanup context that loads (or starts) its models
and puts its ``Backend`` under ``BACKEND``. What is the same for every
runtime — ``/health``, ``/v1/models``, announcing, accounting — reads only
this protocol.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from aiohttp import web

from routing.fleet import Load, ModelOffer


class ModelLoadError(ValueError):
    """A model could not be found or read: the worker says why and exits."""


class Backend(Protocol):
    runtime: str
    capacity: int  # generations at once, as announced
    ready: asyncio.Event  # set once it can serve (announcers wait for it)

    @property
    def serving(self) -> bool:
        """It can take requests now (vLLM: up; llama.cpp: always, once loaded)."""
        ...

    def offers(self) -> tuple[ModelOffer, ...]: ...

    def load(self) -> Load: ...


BACKEND = web.AppKey("backend", Backend)
