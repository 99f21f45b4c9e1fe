"""What the tunnel costs: the same requests to the same server, dialled directly vs through a tunnel.

    python -m bench.tunnel [--quick]

Two gateways side by side in one run: one dials the server (a static
worker), the other reaches it only through the tunnel the server's side
opened (a worker behind NAT).
(a) an instant stand-in upstream: latency at concurrency 1 and requests/s at
concurrency 32; (b) the real llama.cpp worker: streamed tokens/s. Prints
medians and ratios; quote ratios, these machines are noisy.
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

TOKEN = "bench-join-token-0123456789abcdef"
ACCESS = "bench-access-token-0123456789abcdef"


@contextmanager
def tunnel_peer(gateway: str, local: str) -> Iterator[subprocess.Popen[bytes]]:
    """bench/tunnel_peer.py: ``local`` served to ``gateway`` only through a tunnel."""
    env = {**os.environ, "INFERCDN_WORKER_JOIN_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, str(ROOT / "bench" / "tunnel_peer.py"), gateway, local], env=env)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    args = parser.parse_args()
    rounds, seconds, repeats = (200, 1.0, 2) if args.quick else (2000, 4.0, 7)
    quiet = ("--log-level", "warning")
    joins = {"INFERCDN_GATEWAY_JOIN_TOKEN": TOKEN}
    with ExitStack() as stack:
        upstream = stack.enter_context(script("standin_upstream"))
        dialled = stack.enter_context(running("gateway", "gateway", "--worker", upstream.url, *quiet))
        tunnel_gw = stack.enter_context(running("gateway", "gateway", *quiet, env=joins))
        stack.enter_context(tunnel_peer(tunnel_gw.url, upstream.url))
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


if __name__ == "__main__":
    main()
