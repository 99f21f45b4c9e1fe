"""Supervising a ``vllm serve`` child process on a private loopback port.

It starts the server, relays its output to our log (so its loading progress
shows), polls ``/health`` until it answers, and watches the process: if it
dies (or ``restart`` is asked for: it hangs), the worker reports itself
unhealthy and the server is started again after a backoff that doubles up
to a minute (and resets once it has stayed up that long). ``stop`` ends it
with SIGTERM, then SIGKILL after a grace period.

The port is picked at each start, not once: a port someone else took
meanwhile makes vLLM exit, and the next start picks another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable

import aiohttp

log = logging.getLogger("edge_worker.vllm")

MAX_BACKOFF_S = 60.0


def free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class VllmProcess:
    def __init__(
        self,
        command: Callable[[int], list[str]],
        *,
        on_change: Callable[[str | None], None],
        startup_timeout_s: float = 1800.0,
        first_backoff_s: float = 1.0,
    ):
        self._command = command  # the command line for a port
        self._on_change = on_change  # told the server's URL once it answers; None when it is gone
        self._startup_timeout_s = startup_timeout_s
        self._first_backoff_s = first_backoff_s
        self._process: asyncio.subprocess.Process | None = None

    async def run(self) -> None:
        backoff = self._first_backoff_s
        async with aiohttp.ClientSession() as session:
            while True:
                started = time.monotonic()
                await self._run_once(session)
                if time.monotonic() - started > MAX_BACKOFF_S:
                    backoff = self._first_backoff_s
                log.warning("vLLM exited (code %s); starting it again in %.0f s", self._returncode(), backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def restart(self) -> None:
        """End the server (it hangs): the supervisor starts it again after its backoff."""
        await self.stop(grace_s=10.0)

    async def stop(self, grace_s: float = 30.0) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), grace_s)
        except TimeoutError:
            process.kill()
            await process.wait()

    def _returncode(self) -> int | None:
        return None if self._process is None else self._process.returncode

    async def _run_once(self, session: aiohttp.ClientSession) -> None:
        port = free_loopback_port()
        url = f"http://127.0.0.1:{port}"
        command = self._command(port)
        log.info("starting vLLM: %s", " ".join(command))
        self._process = process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        relay = asyncio.create_task(self._relay_output(process))
        try:
            if await self._wait_healthy(session, process, url):
                log.info("vLLM is ready on %s", url)
                self._on_change(url)
            await process.wait()
        finally:
            self._on_change(None)
            if process.returncode is None:  # we are being cancelled: take the child with us
                await self.stop()
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await relay

    async def _wait_healthy(
        self, session: aiohttp.ClientSession, process: asyncio.subprocess.Process, url: str
    ) -> bool:
        deadline = time.monotonic() + self._startup_timeout_s
        while process.returncode is None and time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(f"{url}/health", timeout=aiohttp.ClientTimeout(total=5)) as resp:
                    if resp.status == 200:
                        return True
            await asyncio.sleep(0.5)
        if process.returncode is None:
            log.error("vLLM did not become healthy in %.0f s; restarting it", self._startup_timeout_s)
            await self.stop()
        return False

    async def _relay_output(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            log.info("vllm: %s", line.decode(errors="replace").rstrip())
