"""What hostile workers and clients can do to a gateway, measured in one run.

    python -m bench.hostile [--quick]

(a) memory: a gateway whose only workers are six that answer with bodies that
never end (``bench/misbehaving_upstream.py``); its RSS before, at peak (the
kernel's high-water mark) and after rounds of concurrent requests;
(b) fuzzing: thousands of malformed, out-of-range and deeply nested bodies
over HTTP to a gateway in front of an instant worker; how many got a 5xx;
(c) idle sockets: a gateway under a 1,024-descriptor limit with 1,100 idle
connections open against it; how many of 600 real requests succeed, and
their median latency against the same requests with no idle sockets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

import aiohttp

from bench.overhead import script, wait_healthy

ROOT = Path(__file__).resolve().parent.parent


MODEL = "bench-model"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}


@contextmanager
def gateway(*workers: str, fd_limit: int | None = None, **settings: str) -> Iterator[tuple[str, int]]:
    """``infercdn gateway`` as its own process: (base URL, pid)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    env |= {f"INFERCDN_GATEWAY_{k.upper()}": v for k, v in settings.items()}
    args = [sys.executable, "-m", "gateway", "gateway", "--port", str(port), "--log-level", "error"]
    for w in workers:
        args += ["--worker", w]

    def limit() -> None:
        if fd_limit is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))

    process = subprocess.Popen(args, env=env, preexec_fn=limit)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(10)


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for {pid}")


async def post(session: aiohttp.ClientSession, url: str, body: bytes) -> int:
    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
        await resp.read()
        return resp.status


async def concurrently(url: str, bodies: list[bytes], concurrency: int) -> list[int]:
    queue = list(reversed(bodies))
    statuses: list[int] = []

    async def worker(session: aiohttp.ClientSession) -> None:
        while queue:
            statuses.append(await post(session, url, queue.pop()))

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return statuses


def memory_part(rounds: int) -> str:
    with ExitStack() as stack:
        workers = [stack.enter_context(script("misbehaving_upstream")) for _ in range(6)]
        url, pid = stack.enter_context(gateway(*(w.url for w in workers)))
        body = json.dumps(CHAT).encode()
        asyncio.run(concurrently(url + "/health", [], 1))
        before = rss_mib(pid)
        rows = []
        for concurrency in (6, 60):
            statuses = asyncio.run(
                concurrently(url + "/v1/chat/completions", [body] * concurrency * rounds, concurrency)
            )
            rows.append((concurrency, len(statuses), sorted(set(statuses)), rss_mib(pid, "VmHWM"), rss_mib(pid)))
    lines = [
        "| concurrent requests | requests | statuses | RSS before MiB | peak MiB | after MiB | peak / before |",
        "|---:|---:|---|---:|---:|---:|---:|",
    ]
    for concurrency, n, statuses, peak, after in rows:
        lines.append(
            f"| {concurrency} | {n} | {statuses} | {before:.1f} | {peak:.1f} | {after:.1f} | {peak / before:.2f} |"
        )
    return "\n".join(lines)


def fuzzed_bodies(n: int, rng: random.Random) -> list[bytes]:
    """Valid requests with one or more fields made hostile, and some bodies that are not JSON at all."""
    nasty: list[object] = [
        None, True, -1, 0, 2**63, 10**400, -(10**30), 1e308, "", "\ud800", "x" * 10_000, [], {}, [[[[[]]]]],
        {"type": "text"}, ["a", 1, None], {"include_usage": "yes"}, 3.5, "NaN", [{"role": "user"}],
    ]  # fmt: skip
    fields = [
        "model", "messages", "temperature", "top_p", "max_tokens", "stop", "seed", "stream", "stream_options",
        "n", "frequency_penalty", "presence_penalty", "quantizations", "region", "max_completion_tokens",
    ]  # fmt: skip
    out = []
    for _ in range(n):
        roll = rng.random()
        if roll < 0.05:
            out.append(rng.randbytes(rng.randint(0, 300)))
        elif roll < 0.10:
            depth = rng.choice([70, 1_000, 100_000])
            out.append(b'{"model": "bench-model", "messages": ' + b"[" * depth + b"]" * depth + b"}")
        elif roll < 0.15:
            out.append(b'{"model": "bench-model", "messages": [{"role": "user", "content": "hi"}], "top_p": NaN}')
        else:
            body: dict[str, object] = dict(CHAT)
            for field in rng.sample(fields, rng.randint(1, 3)):
                body[field] = rng.choice(nasty)
            out.append(json.dumps(body).encode("utf-8", "surrogatepass"))
    return out


def fuzz_part(n: int) -> str:
    with ExitStack() as stack:
        worker = stack.enter_context(script("standin_upstream"))
        url, _ = stack.enter_context(gateway(worker.url))
        statuses = asyncio.run(concurrently(url + "/v1/chat/completions", fuzzed_bodies(n, random.Random(1)), 8))
    by_class = {f"{c}xx": sum(1 for s in statuses if s // 100 == c) for c in (2, 4, 5)}
    return (
        "| bodies | 2xx | 4xx | 5xx |\n|---:|---:|---:|---:|\n"
        f"| {len(statuses)} | {by_class['2xx']} | {by_class['4xx']} | {by_class['5xx']} |"
    )


async def timed(url: str, n: int) -> tuple[int, list[float]]:
    body = json.dumps(CHAT).encode()
    ok, times = 0, []
    connector = aiohttp.TCPConnector(limit=0, force_close=True)  # a new connection each time, as new clients
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as session:
        for _ in range(n):
            started = time.perf_counter()
            with suppress(aiohttp.ClientError, TimeoutError):  # a failure is counted by not being ok
                ok += await post(session, url + "/v1/chat/completions", body) == 200
            times.append(time.perf_counter() - started)
    return ok, times


def idle_part(requests: int) -> str:
    rows = []
    with ExitStack() as stack:
        worker = stack.enter_context(script("standin_upstream"))
        url, _ = stack.enter_context(gateway(worker.url, fd_limit=1024))
        host, port = url.removeprefix("http://").split(":")
        for idle_count in (0, 1100):
            idle = [socket.create_connection((host, int(port))) for _ in range(idle_count)]
            ok, times = asyncio.run(timed(url, requests))
            rows.append((idle_count, ok, statistics.median(times) * 1000))
            for s in idle:
                s.close()
    base = rows[0][2]
    lines = ["| idle sockets open | requests ok | median ms | vs none |", "|---:|---:|---:|---:|"]
    lines += [f"| {idle} | {ok} / {requests} | {median:.2f} | {median / base:.2f} |" for idle, ok, median in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    args = parser.parse_args()
    print("(a) six workers whose bodies never end\n")
    print(memory_part(rounds=1 if args.quick else 5), flush=True)
    print("\n(b) fuzzed request bodies over HTTP\n")
    print(fuzz_part(300 if args.quick else 3000), flush=True)
    print("\n(c) idle sockets past the descriptor limit (1,024)\n")
    print(idle_part(60 if args.quick else 600), flush=True)


if __name__ == "__main__":
    main()
