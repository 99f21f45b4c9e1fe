"""Linux network namespaces for tests, made with ip(8) and nft(8) and removed at the end.

A test that needs them fails, with what is missing, where this machine cannot make them: a
skipped network test would pass CI without ever having run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Drops every TCP connection opened from outside (a SYN without ACK on any interface but lo):
# what a home router's NAT does to a machine behind it. Its own outbound connections still work.
NO_INBOUND = """
table inet nat_like {
    chain input {
        type filter hook input priority 0; policy accept;
        iifname != "lo" tcp flags & (syn | ack) == syn counter drop
    }
}
"""


def run(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(args, input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def require_namespaces() -> None:
    missing = [tool for tool in ("ip", "nft") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not found: install iproute2 and nftables (make test does)")
    if os.geteuid() != 0:
        pytest.fail("network namespace tests need root (CAP_NET_ADMIN) to make namespaces: run make test as root")


@dataclass
class Namespaces:
    """Namespaces and links made by one test; ``close`` removes them (their links go with them)."""

    prefix: str
    names: list[str] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def make(self, role: str) -> str:
        name = f"{self.prefix}-{role}"
        run("ip", "netns", "add", name)
        self.names.append(name)
        run("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def link(self, a: str | None, a_address: str, b: str, b_address: str, tag: str) -> None:
        """A veth pair between namespace ``a`` (None: this one) and ``b``, with a /30 address at each end."""
        end_a, end_b = f"{self.prefix[-6:]}{tag}a", f"{self.prefix[-6:]}{tag}b"
        run("ip", "link", "add", end_a, "type", "veth", "peer", "name", end_b, "netns", b)
        if a is not None:
            run("ip", "link", "set", end_a, "netns", a)
        a_cmd = ("ip",) if a is None else ("ip", "-n", a)
        run(*a_cmd, "addr", "add", f"{a_address}/30", "dev", end_a)
        run(*a_cmd, "link", "set", end_a, "up")
        run("ip", "-n", b, "addr", "add", f"{b_address}/30", "dev", end_b)
        run("ip", "-n", b, "link", "set", end_b, "up")

    def refuse_inbound(self, name: str) -> None:
        run("ip", "netns", "exec", name, "nft", "-f", "-", stdin=NO_INBOUND)

    def dropped_syns(self, name: str) -> int:
        rules = run("ip", "netns", "exec", name, "nft", "list", "table", "inet", "nat_like")
        counter = rules.split("counter packets ", 1)[1]
        return int(counter.split()[0])

    def spawn(self, name: str, args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        """``python ARGS`` inside namespace ``name``, from the repository root (secrets in ``env``, never argv)."""
        with log.open("wb") as sink:
            process = subprocess.Popen(
                ["ip", "netns", "exec", name, sys.executable, *args],
                cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        self.processes.append(process)
        return process

    def can_connect(self, name: str, host: str, port: int, timeout_s: float) -> bool:
        probe = f"import socket; socket.create_connection(({host!r}, {port}), timeout={timeout_s}).close()"
        done = subprocess.run(["ip", "netns", "exec", name, sys.executable, "-c", probe], capture_output=True)
        return done.returncode == 0

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()
        for name in reversed(self.names):
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)


@contextmanager
def namespaces() -> Iterator[Namespaces]:
    require_namespaces()
    made = Namespaces(prefix=f"icdn{os.getpid() % 100000:05d}")
    try:
        yield made
    finally:
        made.close()
