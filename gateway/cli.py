"""The ``infercdn`` command: ``up``, ``gateway`` and ``worker``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from gateway.config import GatewayConfig
from gateway.serve import serve
from gateway.up import WorkerDidNotStart, up
from routing.policies import POLICIES
from routing.process import run
from routing.settings import ConfigError, load_process_settings

PROG = "infercdn"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML config file; also $INFERCDN_CONFIG")
    p.add_argument("--host", help="address the gateway listens on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port the gateway listens on (default 8080)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="InferCDN: a decentralized inference CDN.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p_up = sub.add_parser(
        "up",
        help="start a gateway plus one local llama.cpp worker",
        description="Start a gateway plus one local llama.cpp worker (the bundled SmolLM2 "
        "unless --model is given), answering OpenAI requests.",
    )
    _common(p_up)
    p_up.add_argument(
        "--model",
        dest="models",
        action="append",
        metavar="GGUF",
        help="a GGUF file for the local worker; repeat for more",
    )
    p_up.add_argument("--worker-port", type=int, default=0, help="the local worker's port (default: a free one)")
    p_up.add_argument(
        "--worker", dest="workers", action="append", metavar="URL", help="an extra upstream worker URL; repeat for more"
    )

    p_gw = sub.add_parser(
        "gateway",
        help="run a gateway in front of workers",
        description="Run a gateway that routes OpenAI requests to edge workers.",
    )
    _common(p_gw)
    p_gw.add_argument(
        "--worker",
        dest="workers",
        action="append",
        metavar="URL",
        help="an upstream worker's base URL (e.g. http://127.0.0.1:8081); repeat for more",
    )
    p_gw.add_argument("--max-attempts", type=int, help="workers one request may try (default 3)")
    p_gw.add_argument("--first-byte-timeout-s", type=float, help="seconds to wait for a stream's first byte")
    p_gw.add_argument("--request-timeout-s", type=float, help="seconds a non-streaming request may take")
    p_gw.add_argument("--deadline-s", type=float, help="seconds all attempts together may take (default 600)")
    p_gw.add_argument(
        "--routing-policy",
        choices=sorted(POLICIES),
        help="how workers are ordered (default expected-latency; the others are baselines)",
    )

    sub.add_parser("worker", help="run an edge worker (see 'infercdn worker --help')", add_help=False)
    return parser


def gateway_config(args: argparse.Namespace, flags: dict[str, Any]) -> GatewayConfig:
    return load_process_settings(GatewayConfig, section="gateway", config_file=args.config, env=os.environ, flags=flags)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "worker":
        # The worker has its own CLI; running it as its own module keeps the
        # gateway and worker packages apart (neither imports the other).
        os.execv(sys.executable, [sys.executable, "-m", "edge_worker", *argv[1:]])
    args = build_parser().parse_args(argv)
    common = {"host": args.host, "port": args.port, "log_level": args.log_level, "workers": args.workers}
    try:
        if args.command == "gateway":
            flags = {
                **common,
                "max_attempts": args.max_attempts,
                "first_byte_timeout_s": args.first_byte_timeout_s,
                "request_timeout_s": args.request_timeout_s,
            }
            config = gateway_config(args, flags)
        else:
            config = gateway_config(args, common)
    except ConfigError as exc:
        print(f"{PROG} {args.command}: invalid config: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "gateway":
            run(lambda: serve(config))
        else:
            worker_args = [a for m in args.models or () for a in ("--model", m)]
            if args.config:
                worker_args += ["--config", str(args.config)]
            run(lambda: up(config, worker_args, args.worker_port))
    except (OSError, WorkerDidNotStart) as exc:
        print(f"{PROG} {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0
