"""Where a worker's key file is, for the subcommands that work on it offline (receipts, rotate-key).

The same settings the worker itself reads (``--config``, ``$INFERCDN_*``, ``--port``, ``--key-file``)
name the same file, so a subcommand finds what the running worker uses.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from edge_worker.config import WorkerConfig
from routing.settings import load_process_settings


def add_key_file_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="the worker's TOML config file; also $INFERCDN_CONFIG")
    p.add_argument("--port", type=int, help="the worker's port (names its default key file)")
    p.add_argument("--key-file", help="the worker's key file")


def key_path_of(args: argparse.Namespace) -> Path:
    """The key file these arguments name; ConfigError if the settings are invalid."""
    flags = {k: v for k, v in (("port", args.port), ("key_file", args.key_file)) if v is not None}
    config = load_process_settings(WorkerConfig, section="worker", config_file=args.config, env=os.environ, flags=flags)
    return config.key_path(os.environ)
