"""A real PostgreSQL server for the test run: Debian's package, a private data dir and port.

The server refuses to run as root, so as root it runs as the package's
``postgres`` user. Password authentication (SCRAM) is on, as in a real
deployment; the password lives in a file only that user reads, and in the
URL the tests hand the gateway through its config.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import glob
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from bench.servers import free_port
from tests.waiting import poll_until


@dataclass(frozen=True, slots=True)
class Postgres:
    port: int
    password: str

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/{database}"


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is missing: 'make test' installs Debian's postgresql package")
    return found[-1]


def _as_owner(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@contextmanager
def running_postgres() -> Iterator[Postgres]:
    root = Path(tempfile.mkdtemp(prefix="infercdn-pg-"))
    data, secret = root / "data", root / "password"
    password = secrets.token_urlsafe(16)
    secret.write_text(password)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(secret, "postgres")
    root.chmod(0o700)
    secret.chmod(0o600)
    initdb = [_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=scram-sha-256", f"--pwfile={secret}"]
    subprocess.run(_as_owner(initdb), check=True, capture_output=True)
    port = free_port()
    server = subprocess.Popen(
        _as_owner(
            [
                _bin("postgres"),
                "-D", str(data),
                "-p", str(port),
                "-k", str(root),
                "-c", "listen_addresses=127.0.0.1",
                "-c", "fsync=off",  # a throwaway cluster: a killed gateway is what is tested, not a power cut
                "-c", "max_connections=200",
            ]
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        poll_until(lambda: _ready(root, port) or server.poll() is not None, timeout_s=60)
        if server.poll() is not None:
            raise RuntimeError(f"postgres exited: {server.stderr.read().decode()[-2000:] if server.stderr else ''}")
        yield Postgres(port, password)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


def _ready(socket_dir: Path, port: int) -> bool:
    return (socket_dir / f".s.PGSQL.{port}").exists()


def create_database(pg: Postgres, name: str) -> str:
    """A fresh, empty database; its URL."""

    async def create() -> None:
        connection = await asyncpg.connect(pg.url())
        try:
            await connection.execute(f'create database "{name}"')
        finally:
            await connection.close()

    # Its own thread and loop: fixtures may ask for it from inside a test's running loop.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, create()).result()
    return pg.url(name)
