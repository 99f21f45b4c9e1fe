"""One edge worker under concurrent streams: continuous batching against one sequence at a time.

    python -m bench.worker_throughput [--seconds S] [--rounds R] [--llama-server PATH] [--quantize Q4_0]

Closed loop: C clients each stream greedy 64-token completions of distinct
prompts, one after another, for S seconds, at C = 1, 4, 8. Targets, side by
side in one run: the worker with ``--parallel 1``, with ``--parallel 8``, and
llama.cpp's own ``llama-server -np 8`` when a binary is given. All of them
run at once (idle but for the one measured) and are measured in R
interleaved rounds of S/R seconds: this machine's speed drifts by a fifth
within minutes, and one target measured after another would carry the
drift into the ratios. Tokens/s are the median over rounds; TTFT
percentiles pool every round's requests. ``--quantize TYPE`` serves the
bundled model requantized (with llama.cpp's own quantizer) instead of its
Q4_1, whose matrices have no batched CPU kernel. Then a
multi-turn chat: the time to first token of turn 3 when its earlier turns
are in the worker's KV cache, against the same length of conversation it has
never seen. Prints medians and ratios; quote ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import itertools
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.overhead import table, wait_healthy
from bench.servers import free_port, running
from edge_worker.runtimes.llama_cpp.catalog import bundled_model_path

MODEL = "smollm2-135m-instruct"
MAX_TOKENS = 64
CONCURRENCY = (1, 4, 8)
_counter = itertools.count()


@dataclass
class Run:
    tokens: int = 0
    requests: int = 0
    ttft_s: list[float] = field(default_factory=list)


async def stream_once(session: aiohttp.ClientSession, url: str, prompt: str, run: Run) -> None:
    body = {
        "model": MODEL,
        "prompt": prompt,
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},  # tokens as the server counted them
    }
    started = time.perf_counter()
    first = None
    async with session.post(f"{url}/v1/completions", json=body) as resp:
        assert resp.status == 200, await resp.text()
        async for line in resp.content:
            if not line.startswith(b"data: {"):
                continue
            first = first or time.perf_counter()
            usage = json.loads(line[6:]).get("usage")
            if usage:
                run.tokens += int(usage["completion_tokens"])
    if first is not None:
        run.ttft_s.append(first - started)
    run.requests += 1


async def closed_loop(url: str, concurrency: int, seconds: float, first: int = 0) -> tuple[Run, float]:
    run = Run()
    deadline = time.perf_counter() + seconds
    # Every target gets the same prompts, in the same order; a later round (``first``) new ones, so that
    # no server answers from a cache of what it was asked in an earlier round.
    numbers = itertools.count(first)

    async def client(session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < deadline:
            n = next(numbers)  # distinct prompts: no two requests share more than a few tokens
            await stream_once(session, url, f"Story {n}: {n * 7919 % 1000} dragons and {n} knights", run)

    # A connection per request, for every target: llama-server's HTTP library closes kept-alive
    # connections under load, which a pooled client sees as "server disconnected".
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        await stream_once(session, url, "warm up", Run())
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        return run, time.perf_counter() - started


async def turn_three_ttft(url: str, warm: bool, repeats: int = 5) -> float:
    """TTFT of a conversation's third turn: its first two turns served before (warm) or never (cold)."""
    samples = []
    async with aiohttp.ClientSession() as session:
        for _ in range(repeats):
            n = next(_counter)
            turns = [f"User {n}: tell me about topic {n} in detail, please, with examples and history.\n"] * 3
            history = ""
            for turn in turns[:2]:
                history += turn + "Assistant:"
                if warm:
                    run = Run()
                    await stream_once(session, url, history, run)
                history += " " + "Some earlier answer text about the topic. " * 20 + "\n"
            run = Run()
            await stream_once(session, url, history + turns[2] + "Assistant:", run)
            samples.append(run.ttft_s[0])
    return statistics.median(samples)


@contextmanager
def llama_server(binary: str, parallel: int, model: Path) -> Iterator[str]:
    port = free_port()
    # The same threads as the worker uses by default (all cores); llama-server would pick the physical ones.
    threads = str(os.cpu_count() or 1)
    command = [binary, "-m", str(model), "--port", str(port), "-np", str(parallel), "-c", "16384"]
    command += ["-t", threads, "-tb", threads]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", timeout_s=120)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def requantized(kind: str, directory: Path) -> Path:
    """The bundled model requantized to ``kind`` (a GGUF type name such as Q4_0), under the same model id."""
    import llama_cpp as lc

    file_types = {name.removeprefix("LLAMA_FTYPE_MOSTLY_"): value for name, value in vars(lc).items()}
    params = lc.llama_model_quantize_default_params()
    params.ftype = file_types[kind.upper()]
    params.allow_requantize = True
    target = directory / f"SmolLM2-135M-Instruct.{kind.upper()}.gguf"
    if lc.llama_model_quantize(str(bundled_model_path()).encode(), str(target).encode(), ctypes.byref(params)):
        raise SystemExit(f"llama.cpp could not quantize to {kind}")
    return target


def measure(targets: dict[str, str], seconds: float, rounds: int) -> dict[str, dict[int, tuple[float, ...]]]:
    """(tokens/s, req/s, TTFT p50, TTFT p99) per target and concurrency, from interleaved rounds."""
    rates: dict[tuple[str, int], list[tuple[float, float]]] = {}
    ttfts: dict[tuple[str, int], list[float]] = {}
    for round_ in range(rounds):
        for level, c in enumerate(CONCURRENCY):
            for label, url in targets.items():
                first = 1_000_000 * (round_ * len(CONCURRENCY) + level)
                run, elapsed = asyncio.run(closed_loop(url, c, seconds / rounds, first))
                rates.setdefault((label, c), []).append((run.tokens / elapsed, run.requests / elapsed))
                ttfts.setdefault((label, c), []).extend(run.ttft_s)
    out: dict[str, dict[int, tuple[float, ...]]] = {}
    for (label, c), samples in rates.items():
        ttft = sorted(ttfts[(label, c)])
        p99 = ttft[min(len(ttft) - 1, int(0.99 * len(ttft)))]
        tokens = statistics.median(t for t, _ in samples)
        requests = statistics.median(r for _, r in samples)
        out.setdefault(label, {})[c] = (tokens, requests, statistics.median(ttft), p99)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=12.0, help="per target and concurrency level, all rounds")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--llama-server", help="a llama-server binary, to compare with -np 8")
    parser.add_argument("--quantize", help="serve the bundled model requantized to this GGUF type, e.g. Q4_0")
    args = parser.parse_args()
    turn3: dict[str, float] = {}
    with ExitStack() as stack:
        model = bundled_model_path()
        if args.quantize:
            model = requantized(args.quantize, Path(stack.enter_context(tempfile.TemporaryDirectory())))
        worker_args = ("--model", str(model), "--log-level", "warning")
        targets = {
            label: stack.enter_context(running("edge_worker", "--parallel", parallel, *worker_args)).url
            for label, parallel in (("worker --parallel 1", "1"), ("worker --parallel 8", "8"))
        }
        if args.llama_server:
            targets["llama-server -np 8"] = stack.enter_context(llama_server(args.llama_server, 8, model))
        results = measure(targets, args.seconds, args.rounds)
        turn3["cold"] = asyncio.run(turn_three_ttft(targets["worker --parallel 8"], warm=False))
        turn3["warm"] = asyncio.run(turn_three_ttft(targets["worker --parallel 8"], warm=True))
    base = results["worker --parallel 1"]
    reference = results.get("llama-server -np 8")
    rows = [["target", "streams", "tokens/s", "req/s", "TTFT p50 ms", "TTFT p99 ms", "tokens/s vs --parallel 1"]]
    if reference:
        rows[0] += ["tokens/s vs llama-server", "TTFT p50 vs llama-server"]
    for label, by_c in results.items():
        for c, (tps, rps, p50, p99) in by_c.items():
            ratio = tps / base[c][0]
            row = [label, str(c), f"{tps:.1f}", f"{rps:.2f}", f"{p50 * 1000:.0f}", f"{p99 * 1000:.0f}", f"{ratio:.2f}"]
            if reference:
                row += [f"{tps / reference[c][0]:.2f}", f"{p50 / reference[c][2]:.2f}"]
            rows.append(row)
    print(f"Model: {model.name}\n")
    print(
        f"## Concurrent greedy {MAX_TOKENS}-token streams, closed loop, {args.rounds} rounds, {args.seconds:g} s each\n"
    )
    print(table(rows))
    print("\n## Multi-turn: TTFT of turn 3 (worker --parallel 8, median of 5)\n")
    print(
        table(
            [
                ["earlier turns", "TTFT ms", "vs never seen"],
                ["never seen (no cache)", f"{turn3['cold'] * 1000:.0f}", "1.00"],
                ["served before (prefix cache)", f"{turn3['warm'] * 1000:.0f}", f"{turn3['warm'] / turn3['cold']:.2f}"],
            ]
        )
    )
    print(json.dumps({"results": {k: {str(c): v for c, v in r.items()} for k, r in results.items()}, "turn3": turn3}))


if __name__ == "__main__":
    main()
