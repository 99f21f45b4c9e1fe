"""``infercdn up``: a gateway plus one local llama.cpp worker, for a laptop.

The worker runs as a child process (``python -m edge_worker``), so a crash
in native code cannot take the gateway down; the gateway waits until the
worker is healthy, then serves. Ctrl-C stops both.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
from dataclasses import replace

import aiohttp

from gateway.config import GatewayConfig
from gateway.serve import serve

WORKER_START_TIMEOUT_S = 600


class WorkerDidNotStart(RuntimeError):
    pass


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


async def wait_healthy(url: str, process: asyncio.subprocess.Process, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise WorkerDidNotStart(f"the worker exited with code {process.returncode} while starting")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(f"{url}/health", timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise WorkerDidNotStart(f"the worker was not healthy after {timeout_s:.0f} s")


def banner(base: str, model: str) -> str:
    return f"""
InferCDN is up: an OpenAI-compatible API on {base}/v1
Try it:
  curl {base}/v1/chat/completions -H 'Content-Type: application/json' \\
    -d '{{"model": "{model}", "messages": [{{"role": "user", "content": "Say hello"}}]}}'

  from openai import OpenAI
  client = OpenAI(base_url="{base}/v1", api_key="unused")
  print(client.chat.completions.create(model="{model}",
        messages=[{{"role": "user", "content": "Say hello"}}]).choices[0].message.content)

Press Ctrl-C to stop.
"""


async def first_model(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/v1/models") as resp:
        data = await resp.json()
        return str(data["data"][0]["id"])


async def up(gateway: GatewayConfig, worker_args: list[str], worker_port: int) -> None:
    port = worker_port or free_port("127.0.0.1")
    worker_url = f"http://127.0.0.1:{port}"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge_worker", "--host", "127.0.0.1", "--port", str(port), *worker_args
    )
    try:
        await wait_healthy(worker_url, process, WORKER_START_TIMEOUT_S)
        model = await first_model(worker_url)
        config = _with_worker(gateway, worker_url)
        await serve(config, until=process.wait(), banner=banner(f"http://{config.host}:{config.port}", model))
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


def _with_worker(config: GatewayConfig, url: str) -> GatewayConfig:
    return replace(config, workers=(*config.workers, url))
