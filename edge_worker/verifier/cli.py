"""``infercdn verifier``: serve a reference model that checks workers' answers."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from aiohttp import web

from edge_worker.runtimes.base import ModelLoadError
from edge_worker.verifier.app import create_app
from edge_worker.verifier.config import VerifierConfig
from routing.process import run, run_until_stopped
from routing.settings import ConfigError, load_process_settings
from routing.telemetry import LOG_FORMATS, configure_logging


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Serve a trusted reference model: gateways send it samples of real answers, and it scores "
        "them against the GGUF file a worker claims to serve. The key gateways present comes from the config "
        "file or $INFERCDN_VERIFIER_KEY, never a flag.",
    )
    p.add_argument("--config", type=Path, help="TOML config file (the [verifier] table); also $INFERCDN_CONFIG")
    p.add_argument(
        "--model",
        help="the GGUF file to check llama.cpp workers against (offers name it by SHA-256), or the Hugging Face "
        "directory to check vLLM workers against (by digest): the verifier starts a vLLM for it",
    )
    p.add_argument(
        "--vllm-url",
        help="attach to a vLLM already serving the Hugging Face directory --model (e.g. "
        "http://127.0.0.1:8000) instead of starting one",
    )
    p.add_argument(
        "--vllm-arg",
        dest="vllm_args",
        action="append",
        metavar="ARG",
        help="with --model DIR and no --vllm-url: an argument for the vLLM it starts; repeat, e.g. "
        "--vllm-arg=--max-model-len --vllm-arg=8192",
    )
    p.add_argument(
        "--vllm-top-logprobs",
        type=int,
        help="the likeliest tokens a sampled answer's check reads per position (default 300; a vLLM at "
        "--vllm-url needs --max-logprobs of at least this)",
    )
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default 8090)")
    p.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    p.add_argument("--gpu-layers", type=int, help="layers kept on the GPU, -1 for all (needs a GPU build)")
    p.add_argument("--context-length", type=int, help="the longest answer it scores (default: trained, ≤ 8192)")
    p.add_argument("--consul-url", help="announce this verifier in this Consul agent (with --public-url)")
    p.add_argument("--public-url", help="where gateways reach this verifier, as announced in Consul")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", choices=LOG_FORMATS)
    return p


async def serve(config: VerifierConfig) -> None:
    runner = web.AppRunner(create_app(config), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, config.host, config.port).start()
        logging.getLogger("edge_worker.verifier").info("verifier ready on http://%s:%d", config.host, config.port)
        await run_until_stopped()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None, prog: str = "infercdn verifier") -> int:
    given = sys.argv[1:] if argv is None else argv
    if any(a == "--key" or a.startswith("--key=") for a in given):
        print(f"{prog}: --key is not a flag (argv shows in ps): set $INFERCDN_VERIFIER_KEY", file=sys.stderr)
        return 2
    args = build_parser(prog).parse_args(given)
    flags = {k: v for k, v in vars(args).items() if k != "config"}
    try:
        config = load_process_settings(
            VerifierConfig, section="verifier", config_file=args.config, env=os.environ, flags=flags
        )
    except ConfigError as exc:
        print(f"{prog}: invalid config: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level, config.log_format)
    try:
        run(lambda: serve(config))
    except (OSError, ModelLoadError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    return 0
