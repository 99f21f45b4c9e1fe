"""Real InferCDN processes on loopback, for benchmarks and tests: start, wait healthy, stop."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _wait_healthy(server: Server, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.url} exited early:\n{server.log()}")
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{server.url} not healthy after {timeout_s}s:\n{server.log()}")


@contextmanager
def running(
    module: str,
    *args: str,
    port: int | None = None,
    timeout_s: float = 120,
    env: dict[str, str] | None = None,
    fd_limit: int | None = None,
) -> Iterator[Server]:
    """Run ``python -m module args… --host 127.0.0.1 --port P`` until the block ends.

    ``env`` adds to this process's environment; ``fd_limit`` caps the child's open descriptors.
    Its state (keys, enrollments) goes to a directory of its own, removed at the end, unless ``env`` says where.
    """
    port = port or free_port()
    log = Path(tempfile.mkstemp(prefix=f"infercdn-{module}-", suffix=".log")[1])
    state = tempfile.TemporaryDirectory(prefix="infercdn-state-")
    child_env = {**os.environ, "PYTHONUNBUFFERED": "1", "XDG_STATE_HOME": state.name, **(env or {})}

    def limit_descriptors() -> None:
        if fd_limit is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))

    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", module, *args, "--host", "127.0.0.1", "--port", str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=child_env,
            preexec_fn=limit_descriptors if fd_limit is not None else None,
        )
    server = Server(url=f"http://127.0.0.1:{port}", process=process, log_path=log)
    try:
        _wait_healthy(server, timeout_s)
        yield server
    finally:
        stop_process(process, grace_s=15)
        state.cleanup()


def stop_process(process: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``grace_s``; reaped either way."""
    process.terminate()
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
