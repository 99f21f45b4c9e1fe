"""The gateway, for ``bench.overhead`` only: SIGUSR1 turns its ledger off and on while it runs.

    python -m bench.switched_gateway gateway --worker URL …   (the gateway's own arguments)

Identical gateway processes differ by several percent in requests/s on these
machines (memory layout, where the scheduler puts them), more than the ledger
costs: one process measured with its ledger on and off in turn is compared
with itself. Off, requests are not recorded (as with ``ledger_url = "off"``);
the writer and its store stay open and idle.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from gateway import api, cli, serve
from gateway.app import create_app


def switchable_app(*args: Any, **kwargs: Any) -> web.Application:
    app = create_app(*args, **kwargs)

    async def switch(app: web.Application) -> AsyncIterator[None]:
        state = app[api.STATE]  # made by create_app's own context, entered before this one
        ledger = state.ledger

        def flip() -> None:
            state.ledger = None if state.ledger is not None else ledger

        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, flip)
        yield

    app.cleanup_ctx.append(switch)
    return app


if __name__ == "__main__":
    serve.create_app = switchable_app  # type: ignore[attr-defined]  # what ``serve`` builds its app with
    sys.exit(cli.main(sys.argv[1:]))
