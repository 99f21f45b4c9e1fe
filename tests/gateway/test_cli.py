"""The infercdn command as a user types it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def infercdn(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.parametrize("command", ["up", "gateway", "worker"])
def test_each_subcommand_has_help(command: str) -> None:
    result = infercdn(command, "--help")
    assert result.returncode == 0
    assert "--port" in result.stdout


def test_top_level_help_lists_the_subcommands() -> None:
    out = infercdn("--help").stdout
    assert all(word in out for word in ("up", "gateway", "worker"))


def test_bad_config_file_key_is_one_line_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "infercdn.toml"
    config.write_text("[gateway]\nport = 'eighty'\n")
    result = infercdn("gateway", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "gateway.port" in result.stderr


def test_bad_env_var_is_named(tmp_path: Path) -> None:
    import os

    result = infercdn("gateway", env={**os.environ, "INFERCDN_GATEWAY_MAX_ATTEMPTS": "many"})
    assert result.returncode == 2
    assert "INFERCDN_GATEWAY_MAX_ATTEMPTS" in result.stderr


def test_worker_bad_config_is_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "infercdn.toml"
    config.write_text("[worker]\nmax_queue = -1\n")
    result = infercdn("worker", "--config", str(config))
    assert result.returncode == 2
    assert "worker.max_queue" in result.stderr


def test_missing_model_file_fails_clearly(tmp_path: Path) -> None:
    result = infercdn("worker", "--model", str(tmp_path / "nope.gguf"), "--port", "0")
    assert result.returncode == 2
    assert "worker.models" in result.stderr and "nope.gguf" in result.stderr
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"GGUF but not really")
    result = infercdn("worker", "--model", str(fake), "--port", "0")
    assert result.returncode == 1
    assert "fake.gguf" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_file_from_env_var_is_read(tmp_path: Path) -> None:
    import os

    config = tmp_path / "infercdn.toml"
    config.write_text("[gateway]\nmax_attempts = 0\n")
    result = infercdn("gateway", env={**os.environ, "INFERCDN_CONFIG": str(config)})
    assert result.returncode == 2
    assert "gateway.max_attempts" in result.stderr
