"""``infercdn up``: a gateway plus one local llama.cpp worker, for a laptop.

The worker runs as a child process (``python -m edge_worker``), so a crash in
native code cannot take the gateway down. It joins the gateway the way any
edge worker does: it registers with the embedded registry, signed with a join
token made for this run (passed in its environment, never on a command
line), and heartbeats. The banner is printed once it has registered. Ctrl-C
stops both; the worker deregisters on its way out.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import sys
from dataclasses import replace

from aiohttp import web

from gateway import api
from gateway.config import GatewayConfig
from gateway.serve import serve
from routing.settings import state_dir

WORKER_START_TIMEOUT_S = 600


class WorkerDidNotStart(RuntimeError):
    pass


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def banner(base: str, model: str, *, open_access: bool) -> str:
    access = (
        f"\nNo API keys are configured: anyone who can reach {base} can use it.\n"
        if open_access
        else "\nClients need an API key (Authorization: Bearer …).\n"
    )
    return f"""
InferCDN is up: an OpenAI-compatible API on {base}/v1
Try it:
  curl {base}/v1/chat/completions -H 'Content-Type: application/json' \\
    -d '{{"model": "{model}", "messages": [{{"role": "user", "content": "Say hello"}}]}}'

  from openai import OpenAI
  client = OpenAI(base_url="{base}/v1", api_key="unused")
  print(client.chat.completions.create(model="{model}",
        messages=[{{"role": "user", "content": "Say hello"}}]).choices[0].message.content)
{access}
Press Ctrl-C to stop.
"""


async def up(gateway: GatewayConfig, worker_args: list[str], worker_port: int) -> None:
    config = replace(gateway, join_token=gateway.join_token or secrets.token_urlsafe(32))
    port = worker_port or free_port("127.0.0.1")
    gateway_url = f"http://127.0.0.1:{config.port}"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "edge_worker",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--gateway",
        gateway_url,
        *worker_args,
        env={
            **os.environ,
            "INFERCDN_WORKER_JOIN_TOKEN": config.join_token,
            # One key for the local worker across runs: the same id, enrolled once.
            "INFERCDN_WORKER_KEY_FILE": str(state_dir(os.environ) / "up-worker.key"),
        },
    )

    async def ready(app: web.Application) -> str:
        model = await asyncio.wait_for(_first_registered_model(app), WORKER_START_TIMEOUT_S)
        return banner(f"http://{config.host}:{config.port}", model, open_access=not api.auth_required(app))

    try:
        await serve(config, until=process.wait(), ready=ready, own_process=True)
        if process.returncode is not None:
            raise WorkerDidNotStart(f"the worker exited with code {process.returncode}")
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _first_registered_model(app: web.Application) -> str:
    while True:
        state = app.get(api.STATE)
        models = state.fleet.models() if state is not None else {}
        if models:
            return sorted(models)[0]
        await asyncio.sleep(0.1)
