"""What the gateway adds: the same requests direct, through a bare
pass-through, and through the InferCDN gateway, interleaved in one run.

    python -m bench.overhead [--quick]

(a) an instant stand-in upstream: latency at concurrency 1 (non-streaming
and a 64-chunk stream) and requests/s at concurrency 32, through the gateway
with its usage ledger (the default: SQLite, written off the request path), with answers waiting for
their ledger commit (``ledger_wait_s = 2``) and without a ledger (``ledger_url = "off"``). Concurrency 32
runs three processes of the gateway with and without its ledger (identical processes differ by a few
percent here) and many short rounds, each process in turn (the order reversed every other round); it
prints each process's median against the ledger-less ones' (their spread is the noise) and the pooled
ratio with a bootstrap 95 % interval;
(b) the real llama.cpp worker: streamed tokens/s direct vs through the gateway.
Prints medians, p99s and ratios; quote ratios, these machines are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import aiohttp

from bench.servers import Server, free_port, running

ROOT = Path(__file__).resolve().parent.parent


MODEL = "bench-model"
CHAT = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}).encode()
# Identical gateway processes differ by several percent at concurrency 32 on these machines (memory layout,
# hash seeds, where the scheduler puts them): the ledger's cost is judged over several of each.
C32_PROCESSES = 3
OFF = {"INFERCDN_GATEWAY_LEDGER_URL": "off"}
CHAT_STREAM = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}).encode()


@contextmanager
def script(name: str, *args: str) -> Iterator[Server]:
    """Run a bench/ script as its own process (``python bench/NAME.py PORT args``)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / f"{name}.py"), str(port), *args],
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    server = Server(url=f"http://127.0.0.1:{port}", process=process, log_path=Path("/dev/null"))
    try:
        wait_healthy(server.url)
        yield server
    finally:
        process.terminate()
        process.wait(10)


def wait_healthy(url: str, timeout_s: float = 30) -> None:
    """Until ``url``/health answers (OSError if it never does)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


async def one(session: aiohttp.ClientSession, url: str, body: bytes) -> float:
    started = time.perf_counter()
    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
        await resp.read()
        assert resp.status == 200, resp.status
    return time.perf_counter() - started


async def latencies(targets: dict[str, str], path: str, body: bytes, rounds: int) -> dict[str, list[float]]:
    """Sequential requests (concurrency 1), interleaved across targets."""
    out: dict[str, list[float]] = {name: [] for name in targets}
    async with aiohttp.ClientSession() as session:
        for url in targets.values():  # warm the connections
            for _ in range(20):
                await one(session, url + path, body)
        for _ in range(rounds):
            for name, url in targets.items():
                out[name].append(await one(session, url + path, body))
    return out


async def throughput(url: str, body: bytes, concurrency: int, seconds: float) -> float:
    count = 0
    deadline = time.perf_counter() + seconds

    async def loop(session: aiohttp.ClientSession) -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            await one(session, url, body)
            count += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        started = time.perf_counter()
        await asyncio.gather(*(loop(session) for _ in range(concurrency)))
        return count / (time.perf_counter() - started)


async def stream_tokens_per_s(session: aiohttp.ClientSession, url: str, body: bytes) -> float:
    started = time.perf_counter()
    tokens = 0
    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
        async for line in resp.content:
            if line.startswith(b"data: {") and b'"text":"' in line and b'"text":""' not in line:
                tokens += 1
    return tokens / (time.perf_counter() - started)


def ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


async def standin_part(targets: dict[str, list[str]], rounds: int, c32_rounds: int, seconds: float) -> str:
    """``targets``: direct, bare, no-ledger, gateway (the default: its ledger off the request path), waited;
    each a list of identical processes (concurrency 1 uses the first)."""
    columns = ["direct", "bare pass-through", "gateway, no ledger", "gateway", "gateway, answers wait for the ledger"]
    rows = [["measure", *columns, "gateway added", "gateway / bare", "ledger / off", "waited / off"]]
    names = ("direct", "bare", "no-ledger", "gateway", "waited")

    def row(label: str, figures: dict[str, float], digits: int, added: bool) -> list[str]:
        d, b, n, g, w = (figures[name] for name in names)
        cells = [f"{figures[name]:.{digits}f}" for name in names]
        return [label, *cells, f"{g - d:+.3f}" if added else "", f"{g / b:.2f}", f"{g / n:.2f}", f"{w / n:.2f}"]

    firsts = {name: urls[0] for name, urls in targets.items()}
    for label, body in (("non-streaming", CHAT), ("64-chunk stream", CHAT_STREAM)):
        lat = await latencies(firsts, "/v1/chat/completions", body, rounds)
        for stat, q in (("median", 0.5), ("p99", 0.99)):
            rows.append(row(f"{label} c=1 {stat} ms", {name: ms(lat[name], q) for name in names}, 3, True))
    processes = [(name, i) for name, urls in targets.items() for i in range(len(urls))]
    rps: dict[tuple[str, int], list[float]] = {p: [] for p in processes}
    for turn in range(c32_rounds):  # interleaved; the order flips so no process always follows another
        for name, i in processes if turn % 2 == 0 else processes[::-1]:
            url = targets[name][i] + "/v1/chat/completions"
            rps[name, i].append(await throughput(url, CHAT, 32, seconds))
    by_name = {name: [rps[name, i] for i in range(len(urls))] for name, urls in targets.items()}
    pooled = {name: statistics.median([x for run in runs for x in run]) for name, runs in by_name.items()}
    rows.append(row("non-streaming c=32 req/s", pooled, 0, False))
    spread = [["concurrency 32", "median / no ledger's", "95 % interval"]]
    for name, label in (("no-ledger", "no ledger"), ("gateway", "ledger")):
        for i, runs in enumerate(by_name[name], 1):  # identical processes of one build: their spread is noise
            spread.append([f"{label}, process {i}", f"{statistics.median(runs) / pooled['no-ledger']:.3f}", ""])
    for name, label in (("gateway", "ledger / off, all processes"), ("waited", "waited / off")):
        low, high = ratio_interval(by_name[name], by_name["no-ledger"])
        spread.append([label, f"{pooled[name] / pooled['no-ledger']:.3f}", f"{low:.3f} - {high:.3f}"])
    note = f"{c32_rounds} rounds of {seconds:g} s per process, the processes interleaved:"
    return table(rows) + f"\n\n{note}\n\n" + table(spread)


def ratio_interval(tried: list[list[float]], base: list[list[float]], resamples: int = 2000) -> tuple[float, float]:
    """A bootstrap 95 % interval for the ratio of pooled medians: processes drawn again, then each one's
    rounds (fixed seed: the same rounds, the same interval)."""
    draw = random.Random(0)

    def pooled(runs: list[list[float]]) -> float:
        return statistics.median(x for run in draw.choices(runs, k=len(runs)) for x in draw.choices(run, k=len(run)))

    ratios = sorted(pooled(tried) / pooled(base) for _ in range(resamples))
    return ratios[int(0.025 * resamples)], ratios[int(0.975 * resamples) - 1]


async def worker_part(direct: str, gateway: str, repeats: int, model: str, label: str) -> str:
    body = json.dumps(
        {
            "model": model,
            "prompt": "1, 2, 3, 4, 5, 6, 7,",
            "temperature": 0,
            "max_tokens": 128,
            "stream": True,
        }
    ).encode()
    results: dict[str, list[float]] = {"direct": [], "gateway": []}
    async with aiohttp.ClientSession() as session:
        await stream_tokens_per_s(session, direct + "/v1/completions", body)  # warm-up
        for _ in range(repeats):
            results["direct"].append(await stream_tokens_per_s(session, direct + "/v1/completions", body))
            results["gateway"].append(await stream_tokens_per_s(session, gateway + "/v1/completions", body))
    d, g = statistics.median(results["direct"]), statistics.median(results["gateway"])
    return table(
        [
            [label, "direct", "gateway", "gateway / direct"],
            ["streamed tokens/s (median)", f"{d:.1f}", f"{g:.1f}", f"{g / d:.3f}"],
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    parser.add_argument("--worker-url", help="measure (b) on this running worker (e.g. a vLLM one) instead")
    parser.add_argument("--model", default="smollm2-135m-instruct", help="the model (b) asks for")
    args = parser.parse_args()
    rounds, c32_rounds, seconds, repeats = (200, 4, 1.0, 2) if args.quick else (2000, 20, 2.0, 7)
    with ExitStack() as stack:
        upstream = stack.enter_context(script("standin_upstream"))
        bare = stack.enter_context(script("bare_passthrough", upstream.url))
        quiet = ("gateway", "gateway", "--worker", upstream.url, "--log-level", "warning")
        unledgered = [stack.enter_context(running(*quiet, env=OFF)) for _ in range(C32_PROCESSES)]
        # the default: its ledger written off the request path
        ledgered = [stack.enter_context(running(*quiet)) for _ in range(C32_PROCESSES)]
        waited = stack.enter_context(running(*quiet, env={"INFERCDN_GATEWAY_LEDGER_WAIT_S": "2"}))
        targets = {
            "direct": [upstream.url],
            "bare": [bare.url],
            "no-ledger": [s.url for s in unledgered],
            "gateway": [s.url for s in ledgered],
            "waited": [waited.url],
        }
        print("## (a) instant stand-in upstream\n")
        print(asyncio.run(standin_part(targets, rounds, c32_rounds, seconds)), flush=True)
    with ExitStack() as stack:
        if args.worker_url:
            worker_url, label = args.worker_url.rstrip("/"), f"worker at {args.worker_url}"
        else:
            worker_url = stack.enter_context(running("edge_worker", "--log-level", "warning")).url
            label = "real llama.cpp worker"
        gw = stack.enter_context(running("gateway", "gateway", "--worker", worker_url, "--log-level", "warning"))
        print(f"\n## (b) {label}, model {args.model}\n")
        print(asyncio.run(worker_part(worker_url, gw.url, repeats, args.model, label)))


if __name__ == "__main__":
    main()
