"""``infercdn worker``: run one edge worker."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from aiohttp import web

from edge_worker import receipts_cli, rotate_key_cli
from edge_worker.app import create_app, leave
from edge_worker.config import RUNTIMES, WorkerConfig
from edge_worker.runtimes.base import ModelLoadError
from routing.identity import KeyFileError
from routing.process import run, run_until_stopped
from routing.settings import ConfigError, load_process_settings
from routing.telemetry import LOG_FORMATS, configure_logging


def build_parser(prog: str = "infercdn worker") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Run an edge worker: serve GGUF models through llama.cpp, or a model through a supervised "
        "vLLM server, over an OpenAI-compatible API. Secrets (join_token, access_token) come from the "
        "config file or the environment ($INFERCDN_WORKER_JOIN_TOKEN, …), never flags: argv is visible in ps.",
    )
    p.add_argument("--config", type=Path, help="TOML config file (the [worker] table); also $INFERCDN_CONFIG")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default 8081)")
    p.add_argument(
        "--model",
        dest="models",
        action="append",
        metavar="MODEL",
        help="llama.cpp: a GGUF file, repeat for more (default: the bundled SmolLM2-135M-Instruct); "
        "vllm: a model directory or hub id",
    )
    p.add_argument("--context-length", type=int, help="context window per model (default: trained, ≤ 8192)")
    p.add_argument("--threads", type=int, help="CPU threads for generation (default: all cores)")
    p.add_argument(
        "--gpu-layers", type=int, help="llama.cpp: layers kept on the GPU, -1 for all (needs a GPU build; default 0)"
    )
    p.add_argument("--max-queue", type=int, help="requests that may wait per model before 503 (default 16)")
    p.add_argument("--region", help="region label this worker announces")
    p.add_argument(
        "--gateway",
        dest="gateways",
        action="append",
        metavar="URL",
        help="a gateway to register with (embedded registry); repeat for more",
    )
    p.add_argument("--key-file", help="this worker's Ed25519 key (made 0600 on first start)")
    p.add_argument("--advertise-url", help="where gateways reach this worker (default http://HOST:PORT)")
    p.add_argument(
        "--tunnel",
        action="store_true",
        default=None,
        help="behind NAT: dial each gateway and serve over that connection (no inbound port needed)",
    )
    p.add_argument("--worker-id", help="how gateways name this worker (default HOSTNAME-FINGERPRINT of its key)")
    p.add_argument("--consul-url", help="register in this Consul agent instead (e.g. http://127.0.0.1:8500)")
    p.add_argument("--runtime", choices=RUNTIMES, help="llama.cpp (default; GGUF files) or vllm (DIR_OR_ID)")
    p.add_argument("--vllm-url", help="vllm: attach to a running vLLM server instead of starting one")
    p.add_argument(
        "--vllm-arg",
        dest="vllm_args",
        action="append",
        metavar="ARG",
        help="vllm: an argument for vllm serve; repeat, e.g. --vllm-arg=--max-model-len --vllm-arg=8192",
    )
    p.add_argument("--served-model-name", help="vllm: the model id clients use (default: from the model)")
    p.add_argument(
        "--parallel", type=int, help="llama.cpp: sequences per model at once (default: from cores and memory)"
    )
    p.add_argument(
        "--prompt-cache-mib",
        type=int,
        help="llama.cpp: RAM for prompts' KV that slots gave up, put back for their next turn (-1 automatic, 0 none)",
    )
    p.add_argument("--capacity", type=int, help="generations at once, as announced (default: the runtime's)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", choices=LOG_FORMATS, help="text (default) or json, one object per line")
    return p


def load_config(args: argparse.Namespace) -> WorkerConfig:
    flags = {k: v for k, v in vars(args).items() if k != "config"}
    return load_process_settings(WorkerConfig, section="worker", config_file=args.config, env=os.environ, flags=flags)


async def serve(config: WorkerConfig) -> None:
    app = create_app(config)
    # The drain: on stop, requests in flight get this long to finish.
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=config.drain_timeout_s)
    await runner.setup()
    log = logging.getLogger("edge_worker")
    try:
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
        log.info("worker ready on http://%s:%d", config.host, config.port)
        await run_until_stopped()
        log.info("stopping: deregistering, then draining requests in flight (up to %.0f s)", config.drain_timeout_s)
        await leave(app)  # first, so gateways stop sending new requests
    finally:
        await runner.cleanup()


SECRET_FLAGS = ("--join-token", "--access-token")


def main(argv: list[str] | None = None, prog: str = "infercdn worker") -> int:
    given = sys.argv[1:] if argv is None else argv
    if given and given[0] == "receipts":
        return receipts_cli.main(given[1:], prog=f"{prog} receipts")
    if given and given[0] == "rotate-key":
        return rotate_key_cli.main(given[1:], prog=f"{prog} rotate-key")
    for flag in SECRET_FLAGS:
        if any(a == flag or a.startswith(flag + "=") for a in given):
            env = "INFERCDN_WORKER_" + flag.removeprefix("--").replace("-", "_").upper()
            print(f"{prog}: {flag} is not a flag (argv shows in ps): set ${env} or the config file", file=sys.stderr)
            return 2
    args = build_parser(prog).parse_args(argv)
    try:
        config = load_config(args)
    except ConfigError as exc:
        print(f"{prog}: invalid config: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level, config.log_format)
    try:
        run(lambda: serve(config))
    except (OSError, ModelLoadError, KeyFileError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    return 0
