"""What the tunnel costs: the same requests to the same server, dialled directly vs through a tunnel.

    python -m bench.tunnel [--quick]

Two gateways side by side in one run: one dials the server (a static
worker), the other reaches it only through the tunnel the server's side
opened (a worker behind NAT), which passes requests to the server's app
in-process, as the worker does with its own API.
(a) an instant stand-in upstream: latency at concurrency 1 and requests/s at
concurrency 32; (b) the real llama.cpp worker: streamed tokens/s; (c) 100
slow readers of long streams: what the gateway and the worker's side hold
for them (resident memory), against the dialled gateway in the same run.
Prints medians and ratios; quote ratios, these machines are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import aiohttp

from bench.overhead import CHAT, ROOT, latencies, ms, script, stream_tokens_per_s, table, throughput
from bench.servers import running
from routing.tunnel_wire import WINDOW

TOKEN = "bench-join-token-0123456789abcdef"
ACCESS = "bench-access-token-0123456789abcdef"


@contextmanager
def tunnel_peer(gateway: str, *standin: str) -> Iterator[subprocess.Popen[bytes]]:
    """bench/tunnel_peer.py: a stand-in (``standin`` or ``firehose MB``) in-process, served to ``gateway`` only
    through a tunnel, as the worker serves its own API."""
    env = {**os.environ, "INFERCDN_WORKER_JOIN_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, str(ROOT / "bench" / "tunnel_peer.py"), gateway, *standin], env=env)
    try:
        yield process
    finally:
        process.terminate()
        process.wait(10)


def wait_tunnelled(gateway: str, timeout_s: float = 120) -> None:
    """Until the gateway's fleet shows a tunnelled worker it can reach."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{gateway}/admin/v1/fleet", timeout=2) as resp:
            rows = json.load(resp)["workers"]
        if any(r["via"] == "tunnel" and r["health"] != "unreachable" and r["rtt_ms"] for r in rows):
            return
        time.sleep(0.2)
    raise RuntimeError(f"no tunnelled worker at {gateway} after {timeout_s} s")


async def standin_part(targets: dict[str, str], rounds: int, seconds: float) -> str:
    rows = [["stand-in upstream", "dialled", "tunnel", "tunnel added", "tunnel / dialled"]]
    lat = await latencies(targets, "/v1/chat/completions", CHAT, rounds)
    d, t = ms(lat["dialled"], 0.5), ms(lat["tunnel"], 0.5)
    rows.append(["non-streaming c=1 median ms", f"{d:.3f}", f"{t:.3f}", f"{t - d:+.3f}", f"{t / d:.2f}"])
    rps: dict[str, list[float]] = {n: [] for n in targets}
    for _ in range(3):  # interleaved repeats, median taken
        for name, url in targets.items():
            rps[name].append(await throughput(url + "/v1/chat/completions", CHAT, 32, seconds))
    d, t = statistics.median(rps["dialled"]), statistics.median(rps["tunnel"])
    rows.append(["non-streaming c=32 req/s", f"{d:.0f}", f"{t:.0f}", "", f"{t / d:.2f}"])
    return table(rows)


async def worker_part(targets: dict[str, str], repeats: int) -> str:
    body = json.dumps(
        {"model": "smollm2-135m-instruct", "prompt": "1, 2, 3, 4, 5, 6, 7,", "max_tokens": 128, "stream": True}
    ).encode()
    results: dict[str, list[float]] = {name: [] for name in targets}
    async with aiohttp.ClientSession() as session:
        for url in targets.values():
            await stream_tokens_per_s(session, url + "/v1/completions", body)  # warm-up
        for _ in range(repeats):
            for name, url in targets.items():
                results[name].append(await stream_tokens_per_s(session, url + "/v1/completions", body))
    d, t = statistics.median(results["dialled"]), statistics.median(results["tunnel"])
    rows = [["real llama.cpp worker", "dialled", "tunnel", "tunnel / dialled"]]
    rows.append(["streamed tokens/s (median)", f"{d:.1f}", f"{t:.1f}", f"{t / d:.3f}"])
    return table(rows)


SLOW_READERS = 100
SLOW_READ_BYTES = 4096  # each reader takes this much ...
SLOW_READ_EVERY_S = 0.25  # ... this often: 16 KiB/s, far slower than the worker writes


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


async def slow_reader(session: aiohttp.ClientSession, url: str, started: asyncio.Event) -> int:
    """One client that reads its stream slowly; the bytes it read."""
    body = {**json.loads(CHAT), "stream": True}
    got = 0
    try:
        async with session.post(url + "/v1/chat/completions", json=body) as resp:
            if resp.status != 200:
                raise RuntimeError(f"{url}: {resp.status} {await resp.text()}")
            started.set()
            while chunk := await resp.content.read(SLOW_READ_BYTES):
                got += len(chunk)
                await asyncio.sleep(SLOW_READ_EVERY_S)
    finally:
        started.set()  # (a failure too: the run goes on, and the reader's error comes out of gather)
    return got


async def held_for_slow_readers(url: str, pids: dict[str, int], seconds: float) -> dict[str, float]:
    """Resident memory of each process after ``seconds`` of 100 slow readers, less its memory before."""
    before = {name: rss_mib(pid) for name, pid in pids.items()}
    started = [asyncio.Event() for _ in range(SLOW_READERS)]
    # A small receive buffer per client, so the kernel does not absorb the stream for the proxy.
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector, read_bufsize=SLOW_READ_BYTES) as session:
        readers = [asyncio.create_task(slow_reader(session, url, s)) for s in started]
        await asyncio.gather(*(s.wait() for s in started))
        await asyncio.sleep(seconds)
        peak = {name: rss_mib(pid) for name, pid in pids.items()}
        failed = [r.exception() for r in readers if r.done() and not r.cancelled() and r.exception()]
        if failed:
            raise RuntimeError(f"{len(failed)} slow readers failed: {failed[0]!r}")
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    return {name: peak[name] - before[name] for name in pids}


def slow_readers_part(seconds: float) -> str:
    quiet = ("--log-level", "warning")
    rows = [[f"{SLOW_READERS} slow readers, {seconds:g} s", "dialled", "tunnel", "tunnel / dialled"]]
    with ExitStack() as stack:
        upstream = stack.enter_context(script("firehose_upstream", "64"))
        dialled = stack.enter_context(running("gateway", "gateway", "--worker", upstream.url, *quiet))
        tunnel_gw = stack.enter_context(
            running("gateway", "gateway", *quiet, env={"INFERCDN_GATEWAY_JOIN_TOKEN": TOKEN})
        )
        peer = stack.enter_context(tunnel_peer(tunnel_gw.url, "firehose", "64"))
        wait_tunnelled(tunnel_gw.url)
        held_dialled = asyncio.run(held_for_slow_readers(dialled.url, {"gateway": dialled.process.pid}, seconds))
        pids = {"gateway": tunnel_gw.process.pid, "peer": peer.pid}
        held_tunnel = asyncio.run(held_for_slow_readers(tunnel_gw.url, pids, seconds))
    d, t = held_dialled["gateway"], held_tunnel["gateway"]
    rows.append(["gateway resident memory added, MiB", f"{d:.1f}", f"{t:.1f}", f"{t / d:.2f}" if d > 0 else "-"])
    rows.append(["worker side (tunnel peer) added, MiB", "-", f"{held_tunnel['peer']:.1f}", "-"])
    bound = SLOW_READERS * WINDOW / 2**20
    rows.append([f"bound: {SLOW_READERS} x the {WINDOW // 1024} KiB window, MiB", "", f"{bound:.0f}", ""])
    return table(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    parser.add_argument("--only-slow-readers", action="store_true", help="only (c), the slow readers")
    args = parser.parse_args()
    if args.only_slow_readers:
        print(f"## (c) slow readers\n\n{slow_readers_part(5.0 if args.quick else 20.0)}")
        return
    rounds, seconds, repeats = (200, 1.0, 2) if args.quick else (2000, 4.0, 7)
    quiet = ("--log-level", "warning")
    joins = {"INFERCDN_GATEWAY_JOIN_TOKEN": TOKEN}
    with ExitStack() as stack:
        upstream = stack.enter_context(script("standin_upstream"))
        dialled = stack.enter_context(running("gateway", "gateway", "--worker", upstream.url, *quiet))
        tunnel_gw = stack.enter_context(running("gateway", "gateway", *quiet, env=joins))
        stack.enter_context(tunnel_peer(tunnel_gw.url, "standin"))
        wait_tunnelled(tunnel_gw.url)
        print("## (a) instant stand-in upstream\n")
        print(asyncio.run(standin_part({"dialled": dialled.url, "tunnel": tunnel_gw.url}, rounds, seconds)), flush=True)
    with ExitStack() as stack:
        tunnel_gw = stack.enter_context(running("gateway", "gateway", *quiet, env=joins))
        state = stack.enter_context(tempfile.TemporaryDirectory())
        worker_env = {
            "INFERCDN_WORKER_JOIN_TOKEN": TOKEN,
            "INFERCDN_WORKER_ACCESS_TOKEN": ACCESS,  # so the other gateway may dial it too
            "INFERCDN_WORKER_KEY_FILE": f"{state}/w.key",
        }
        worker = stack.enter_context(
            running("edge_worker", "--gateway", tunnel_gw.url, "--tunnel", *quiet, env=worker_env)
        )
        dialled = stack.enter_context(
            running(
                "gateway",
                "gateway",
                "--worker",
                f"{worker.url} key_env=BENCH_ACCESS",
                *quiet,
                env={"BENCH_ACCESS": ACCESS},
            )
        )
        wait_tunnelled(tunnel_gw.url)
        print("\n## (b) real llama.cpp worker (SmolLM2, 128 tokens)\n")
        print(asyncio.run(worker_part({"dialled": dialled.url, "tunnel": tunnel_gw.url}, repeats)))
    print(
        f"\n## (c) slow readers (streams of 64 MB read at 16 KiB/s)\n\n{slow_readers_part(5.0 if args.quick else 20.0)}"
    )


if __name__ == "__main__":
    main()
