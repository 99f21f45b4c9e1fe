"""Where the gateway spends its time on one instant upstream: a cProfile of the gateway process.

    python -m bench.profile_gateway [--requests N] [--stream]

The gateway runs under cProfile while N requests (concurrency 32) go through it
to the instant stand-in upstream; then its top functions by own time are
printed, and InferCDN's own functions by cumulative time. Profiling slows
everything down: read the shares, not the seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import pstats
import tempfile
from pathlib import Path

import aiohttp

from bench.overhead import CHAT, CHAT_STREAM, one, script
from bench.servers import running

OURS = ("gateway/", "routing/")


async def load(url: str, body: bytes, requests: int, concurrency: int = 32) -> None:
    left = requests

    async def loop(session: aiohttp.ClientSession) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await one(session, url, body)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await asyncio.gather(*(loop(session) for _ in range(concurrency)))


def report(path: Path, top: int) -> None:
    stats = pstats.Stats(str(path))
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)  # type: ignore[attr-defined]
    print(f"own time, top {top} (share of {total:.2f} s profiled):")
    for (file, line, name), (_, calls, own, _cumulative, _) in rows[:top]:
        print(f"  {own / total:6.1%}  {calls:>8}  {_where(file, line, name)}")
    print("\nInferCDN's functions by cumulative time:")
    ours = [(k, v) for k, v in rows if any(o in k[0] for o in OURS)]
    by_cumulative = sorted(ours, key=lambda kv: kv[1][3], reverse=True)
    for (file, line, name), (_, calls, _own, cumulative, _) in by_cumulative[:top]:
        print(f"  {cumulative / total:6.1%}  {calls:>8}  {_where(file, line, name)}")


def _where(file: str, line: int, name: str) -> str:
    short = "/".join(Path(file).parts[-2:]) if file != "~" else "builtin"
    return f"{short}:{line} {name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--stream", action="store_true", help="64-chunk streams instead of plain answers")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="infercdn-profile-")) / "gateway.prof"
    with script("standin_upstream") as upstream:
        profiled = ("-o", str(out), "-m", "gateway", "gateway", "--worker", upstream.url, "--log-level", "warning")
        with running("cProfile", *profiled) as gateway:
            body = CHAT_STREAM if args.stream else CHAT
            asyncio.run(load(gateway.url + "/v1/chat/completions", body, args.requests))
    report(out, args.top)


if __name__ == "__main__":
    main()
