"""What the gateway adds: the same requests direct, through a bare
pass-through, and through the InferCDN gateway, interleaved in one run.

    python -m bench.overhead [--quick]

(a) an instant stand-in upstream: latency at concurrency 1 (non-streaming
and a 64-chunk stream) and requests/s at concurrency 32, through the gateway
with its usage ledger (the default: SQLite, written off the request path), with answers waiting for
their ledger commit (``ledger_wait_s = 2``) and without a ledger (``ledger_url = "off"``). At concurrency
32 the ledger is judged within each of three gateway processes (``bench/switched_gateway.py``: a signal
turns its ledger off and on), measured with the ledger on and off in turn for many short rounds:
identical processes differ by more than the ledger costs here, so each is compared with itself. It
prints each process's ratio, the pooled ratio with a bootstrap 95 % interval, and the gateway's CPU
time a request (its event loop's thread, and the ledger's thread apart);
(b) the real llama.cpp worker: streamed tokens/s direct vs through the gateway.
Prints medians, p99s and ratios; quote ratios, these machines are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.servers import Server, free_port, running

ROOT = Path(__file__).resolve().parent.parent


MODEL = "bench-model"
CHAT = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}).encode()
# Identical gateway processes differ by several percent at concurrency 32 on these machines (memory layout,
# hash seeds, where the scheduler puts them): the ledger's cost is judged over several of each.
C32_PROCESSES = 3
SWITCH_SETTLE_S = 0.2  # after the ledger is switched: the other state's last batch goes in first
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
    requests, elapsed = await load(url, body, concurrency, seconds)
    return requests / elapsed


async def load(url: str, body: bytes, concurrency: int, seconds: float) -> tuple[int, float]:
    """Requests answered and seconds taken by ``concurrency`` clients sending for ``seconds``."""
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
        return count, time.perf_counter() - started


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


@dataclass
class Switched:
    """A gateway process whose ledger SIGUSR1 turns off and on (``bench/switched_gateway.py``); it starts on."""

    server: Server
    ledger_on: bool = True

    async def set_ledger(self, on: bool) -> None:
        if self.ledger_on != on:
            os.kill(self.server.process.pid, signal.SIGUSR1)
            self.ledger_on = on
            await asyncio.sleep(SWITCH_SETTLE_S)


@dataclass
class Rounds:
    """One switched process's rounds in one ledger state: requests/s, and its CPU time a request (µs)."""

    rps: list[float] = field(default_factory=list)
    loop_us: list[float] = field(default_factory=list)  # the event loop's (main) thread
    other_us: list[float] = field(default_factory=list)  # its other threads: the ledger's writes, nearly all


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU time (user + system) of a process's main thread and of its other threads together (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    main = other = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        used = (int(fields[11]) + int(fields[12])) / tick
        if task.name == str(pid):
            main = used
        else:
            other += used
    return main, other


async def measure_switched(process: Switched, on: bool, seconds: float, into: Rounds) -> None:
    await process.set_ledger(on)
    pid = process.server.process.pid
    main_before, other_before = cpu_seconds(pid)
    requests, elapsed = await load(process.server.url + "/v1/chat/completions", CHAT, 32, seconds)
    main_after, other_after = cpu_seconds(pid)
    into.rps.append(requests / elapsed)
    into.loop_us.append((main_after - main_before) / requests * 1e6)
    into.other_us.append((other_after - other_before) / requests * 1e6)


async def standin_part(
    targets: dict[str, str], switched: list[Switched], rounds: int, c32_rounds: int, seconds: float
) -> str:
    """``targets``: direct, bare, no-ledger, gateway (the default: its ledger off the request path), waited,
    one process each; ``switched``: gateway processes whose ledger is turned off and on (concurrency 32)."""
    columns = ["direct", "bare pass-through", "gateway, no ledger", "gateway", "gateway, answers wait for the ledger"]
    rows = [["measure", *columns, "gateway added", "gateway / bare", "ledger / off", "waited / off"]]
    names = ("direct", "bare", "no-ledger", "gateway", "waited")

    def row(label: str, figures: dict[str, float], digits: int, added: bool) -> list[str]:
        d, b, n, g, w = (figures[name] for name in names)
        cells = [f"{figures[name]:.{digits}f}" for name in names]
        return [label, *cells, f"{g - d:+.3f}" if added else "", f"{g / b:.2f}", f"{g / n:.2f}", f"{w / n:.2f}"]

    for label, body in (("non-streaming", CHAT), ("64-chunk stream", CHAT_STREAM)):
        lat = await latencies(targets, "/v1/chat/completions", body, rounds)
        for stat, q in (("median", 0.5), ("p99", 0.99)):
            rows.append(row(f"{label} c=1 {stat} ms", {name: ms(lat[name], q) for name in names}, 3, True))
    singles = ("direct", "bare", "waited")
    rps: dict[str, list[float]] = {name: [] for name in singles}
    on, off = [Rounds() for _ in switched], [Rounds() for _ in switched]
    units: list[str | int] = [*singles, *range(len(switched))]
    for turn in range(c32_rounds):  # interleaved; the order flips so no process always follows another
        for unit in units if turn % 2 == 0 else units[::-1]:
            if isinstance(unit, str):
                rps[unit].append(await throughput(targets[unit] + "/v1/chat/completions", CHAT, 32, seconds))
                continue
            states = (True, False) if (turn + unit) % 2 == 0 else (False, True)  # which state goes first alternates
            for state in states:
                await measure_switched(switched[unit], state, seconds, (on if state else off)[unit])
    pooled = {name: statistics.median(runs) for name, runs in rps.items()}
    pooled["gateway"] = statistics.median(x for r in on for x in r.rps)
    pooled["no-ledger"] = statistics.median(x for r in off for x in r.rps)
    rows.append(row("non-streaming c=32 req/s", pooled, 0, False))
    # Each round's ledger-on requests/s over the same process's ledger-off ones, measured next to them.
    paired = [[a / b for a, b in zip(n.rps, f.rps, strict=True)] for n, f in zip(on, off, strict=True)]
    spread = [
        [
            "concurrency 32",
            "ledger on / off",
            "95 % interval",
            "loop thread µs/request, on",
            "off",
            "other threads µs/request, on",
            "off",
        ]
    ]
    for i, (ratios, n, f) in enumerate(zip(paired, on, off, strict=True), 1):
        cpu = [f"{statistics.median(x):.1f}" for x in (n.loop_us, f.loop_us, n.other_us, f.other_us)]
        spread.append([f"process {i}", f"{statistics.median(ratios):.3f}", "", *cpu])
    low, high = median_interval(paired)
    everything = [
        statistics.median(x for r in rs for x in getattr(r, a)) for a in ("loop_us", "other_us") for rs in (on, off)
    ]
    loop_on, loop_off, other_on, other_off = everything
    cpu = [f"{x:.1f}" for x in (loop_on, loop_off, other_on, other_off)]
    spread.append(
        ["all processes", f"{statistics.median(x for r in paired for x in r):.3f}", f"{low:.3f} - {high:.3f}", *cpu]
    )
    low, high = ratio_interval([rps["waited"]], [r.rps for r in off])
    spread.append(
        ["waited / off", f"{pooled['waited'] / pooled['no-ledger']:.3f}", f"{low:.3f} - {high:.3f}", "", "", "", ""]
    )
    note = (
        f"{c32_rounds} rounds of {seconds:g} s for each process and state, the processes interleaved; "
        f"each gateway process with its ledger on and off in turn:"
    )
    return table(rows) + f"\n\n{note}\n\n" + table(spread)


def median_interval(runs: list[list[float]], resamples: int = 2000) -> tuple[float, float]:
    """A bootstrap 95 % interval for the median of all runs' values: processes drawn again, then each one's
    rounds (fixed seed: the same rounds, the same interval)."""
    draw = random.Random(0)
    medians = sorted(
        statistics.median(x for run in draw.choices(runs, k=len(runs)) for x in draw.choices(run, k=len(run)))
        for _ in range(resamples)
    )
    return medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


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
    parser.add_argument("--stand-in-only", action="store_true", help="(a) only: no worker, no model needed")
    parser.add_argument("--c32-rounds", type=int, help="rounds for each process and state at concurrency 32")
    args = parser.parse_args()
    rounds, c32_rounds, seconds, repeats = (200, 4, 1.0, 2) if args.quick else (2000, 20, 2.0, 7)
    c32_rounds = args.c32_rounds or c32_rounds
    with ExitStack() as stack:
        upstream = stack.enter_context(script("standin_upstream"))
        bare = stack.enter_context(script("bare_passthrough", upstream.url))
        arguments = ("gateway", "--worker", upstream.url, "--log-level", "warning")
        unledgered = stack.enter_context(running("gateway", *arguments, env=OFF))
        ledgered = stack.enter_context(running("gateway", *arguments))  # the default: written off the request path
        waited = stack.enter_context(running("gateway", *arguments, env={"INFERCDN_GATEWAY_LEDGER_WAIT_S": "2"}))
        switched = [
            Switched(stack.enter_context(running("bench.switched_gateway", *arguments))) for _ in range(C32_PROCESSES)
        ]
        targets = {
            "direct": upstream.url,
            "bare": bare.url,
            "no-ledger": unledgered.url,
            "gateway": ledgered.url,
            "waited": waited.url,
        }
        print("## (a) instant stand-in upstream\n")
        print(asyncio.run(standin_part(targets, switched, rounds, c32_rounds, seconds)), flush=True)
    if args.stand_in_only:
        return
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
