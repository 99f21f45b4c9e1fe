"""The ``infercdn`` command: ``up``, ``gateway``, ``worker``, ``verifier``, ``keys``, ``fleet`` and ``usage``."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

from gateway.config import GatewayConfig
from gateway.fleet_table import run_fleet_command
from gateway.keys import KeyStore, create_key
from gateway.ledger.entry import DIMENSIONS
from gateway.serve import serve
from gateway.up import WorkerDidNotStart, up
from gateway.usage_report import run_usage_command
from routing.budget import Budget
from routing.policies import POLICIES
from routing.process import run
from routing.ratelimit import Limits
from routing.settings import ConfigError, load_process_settings
from routing.telemetry import LOG_FORMATS, configure_logging

PROG = "infercdn"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML config file; also $INFERCDN_CONFIG")
    p.add_argument("--host", help="address the gateway listens on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port the gateway listens on (default 8080)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", choices=LOG_FORMATS, help="text (default) or json, one object per line")


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
    p_gw.add_argument("--api-keys-file", help="hashed client API keys ('infercdn keys create' writes it)")
    p_gw.add_argument("--consul-url", help="also watch this Consul agent for workers (e.g. http://127.0.0.1:8500)")
    p_gw.add_argument("--allow-open", action="store_true", default=None, help="serve without API keys off loopback")
    # Secrets (join token, API key, admin key) come from the config file or the
    # environment (INFERCDN_GATEWAY_JOIN_TOKEN, …), never flags: argv is visible in ps.

    p_keys = sub.add_parser("keys", help="manage client API keys", description="Manage client API keys.")
    keys_sub = p_keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    p_create = keys_sub.add_parser(
        "create",
        help="make a new API key: printed once, only its hash is stored",
        description="Make a new client API key. It is printed once; the keys file keeps only its SHA-256.",
    )
    p_create.add_argument("--keys-file", type=Path, required=True, help="the gateway's api_keys_file")
    p_create.add_argument("--name", default="", help="who or what the key is for")
    p_create.add_argument("--requests-per-minute", type=int, default=0, help="limit; 0 = none")
    p_create.add_argument("--tokens-per-minute", type=int, default=0, help="limit; 0 = none")
    p_create.add_argument("--tokens-per-day", type=int, default=0, help="budget per UTC day; 0 = none")
    p_create.add_argument("--tokens-per-month", type=int, default=0, help="budget per calendar month (UTC); 0 = none")
    p_list = keys_sub.add_parser("list", help="list keys (ids, names, limits; never secrets)")
    p_list.add_argument("--keys-file", type=Path, required=True)

    p_fleet = sub.add_parser(
        "fleet",
        help="print a gateway's live fleet",
        description="Print the live fleet from a gateway's admin endpoint. The admin key comes from "
        "$INFERCDN_ADMIN_KEY.",
    )
    p_fleet.add_argument("--gateway", default="http://127.0.0.1:8080", help="the gateway's base URL")
    p_fleet.add_argument("--json", action="store_true", help="print the JSON as the gateway gives it")
    fleet_sub = p_fleet.add_subparsers(dest="fleet_command", metavar="ACTION")
    fleet_sub.add_parser("enrollments", help="every enrolled worker key (approved, pending, revoked)")
    fleet_sub.add_parser("pending", help="worker keys waiting for approval (enrollment = manual)")
    fleet_sub.add_parser("audits", help="each audited worker's standing, checks, flags and the last flag's reason")
    fleet_sub.add_parser(
        "calibrate", help="the largest gaps of greedy audits per model and worker, and the audit_gap_nats they suggest"
    )
    for action, text in (
        ("approve", "let a pending worker in"),
        ("revoke", "refuse a worker's key from now on (kept across restarts) and drop it from the fleet"),
        ("forget", "drop a worker's binding so its id may enroll again (e.g. a replaced key)"),
        ("pardon", "clear a worker's conviction by audits: it starts over on probation"),
    ):
        fleet_sub.add_parser(action, help=text).add_argument("worker_id", metavar="ID")

    p_usage = sub.add_parser(
        "usage",
        help="tokens, requests, errors and GPU-seconds from a gateway's ledger",
        description="Usage from a gateway's durable ledger, grouped one way, over a span back from now. "
        "The admin key comes from $INFERCDN_ADMIN_KEY.",
    )
    p_usage.add_argument("--gateway", default="http://127.0.0.1:8080", help="the gateway's base URL")
    p_usage.add_argument("--by", choices=DIMENSIONS, default="worker", help="how rows are grouped (default worker)")
    p_usage.add_argument("--since", default="24h", help="how far back, e.g. 90m, 24h, 7d (default 24h)")
    output = p_usage.add_mutually_exclusive_group()
    output.add_argument("--json", dest="output", action="store_const", const="json", help="print JSON")
    output.add_argument("--csv", dest="output", action="store_const", const="csv", help="print CSV")

    sub.add_parser("worker", help="run an edge worker (see 'infercdn worker --help')", add_help=False)
    sub.add_parser(
        "verifier", help="run a reference model that audits workers (see 'infercdn verifier --help')", add_help=False
    )
    return parser


def gateway_config(args: argparse.Namespace, flags: dict[str, Any]) -> GatewayConfig:
    return load_process_settings(GatewayConfig, section="gateway", config_file=args.config, env=os.environ, flags=flags)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "worker":
        # The worker has its own CLI; running it as its own module keeps the
        # gateway and worker packages apart (neither imports the other).
        os.execv(sys.executable, [sys.executable, "-m", "edge_worker", *argv[1:]])
    if argv and argv[0] == "verifier":
        os.execv(sys.executable, [sys.executable, "-m", "edge_worker.verifier", *argv[1:]])
    args = build_parser().parse_args(argv)
    if args.command == "keys":
        return keys_command(args)
    if args.command == "usage":
        admin_key = os.environ.get("INFERCDN_ADMIN_KEY", "")
        return run_usage_command(args.gateway, admin_key, by=args.by, since=args.since, output=args.output or "table")
    if args.command == "fleet":
        return run_fleet_command(
            args.gateway,
            os.environ.get("INFERCDN_ADMIN_KEY", ""),
            as_json=args.json,
            action=args.fleet_command,
            worker_id=getattr(args, "worker_id", ""),
        )
    settable = {f.name for f in dataclasses.fields(GatewayConfig)}
    flags = {k: v for k, v in vars(args).items() if k in settable}
    try:
        config = gateway_config(args, flags)
    except ConfigError as exc:
        print(f"{PROG} {args.command}: invalid config: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level, config.log_format)
    try:
        if args.command == "gateway":
            run(lambda: serve(config, own_process=True))
        else:
            worker_args = [a for m in args.models or () for a in ("--model", m)]
            worker_args += ["--log-format", config.log_format]
            if args.config:
                worker_args += ["--config", str(args.config)]
            run(lambda: up(config, worker_args, args.worker_port))
    except (OSError, WorkerDidNotStart) as exc:
        print(f"{PROG} {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


def keys_command(args: argparse.Namespace) -> int:
    try:
        store = KeyStore.load(args.keys_file)
    except ConfigError as exc:
        print(f"{PROG} keys: {exc}", file=sys.stderr)
        return 2
    if args.keys_command == "list":
        for k in store.records():
            print(
                f"{k.id}  {k.name or '-'}  rpm={k.requests_per_minute or '-'}  tpm={k.tokens_per_minute or '-'}  "
                f"per day={k.tokens_per_day or '-'}  per month={k.tokens_per_month or '-'}"
            )
        return 0
    limits = Limits(args.requests_per_minute, args.tokens_per_minute)
    budget = Budget(args.tokens_per_day, args.tokens_per_month)
    if min(limits.requests_per_minute, limits.tokens_per_minute, budget.tokens_per_day, budget.tokens_per_month) < 0:
        print(f"{PROG} keys create: limits must be >= 0", file=sys.stderr)
        return 2
    key, record = create_key(store, args.name, limits, budget)
    store.save(args.keys_file)
    print(key)
    print(f"(key {record.id} saved to {args.keys_file} as a hash; this is the only time it is shown)", file=sys.stderr)
    return 0
