"""Typed configuration from a TOML file, environment variables and flags.

One frozen dataclass per process describes its settings; this module fills
it, later sources winning: defaults < TOML section < ``PREFIX_KEY`` env vars <
command-line flags. Any bad value raises ``ConfigError`` naming the key, so a
CLI can print one line and exit 2. Shared here because gateway and worker
must not import each other, and both need the same rules.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type."""


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def load_settings(
    cls: type[T],
    *,
    section: str,
    toml: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> T:
    """Build ``cls`` (a dataclass) from the sources; ``flags`` values of None are unset."""
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}

    table = (toml or {}).get(section, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{section}: expected a table")
    for key, raw in table.items():
        name = key.replace("-", "_")
        if name not in fields:
            raise ConfigError(f"{section}.{key}: unknown key")
        values[name] = _coerce(raw, hints[name], f"{section}.{key}", from_text=False)

    prefix = f"INFERCDN_{section.upper()}_"
    for var, raw in (env or {}).items():
        if not var.startswith(prefix):
            continue
        name = var[len(prefix) :].lower()
        if name not in fields:
            raise ConfigError(f"{var}: unknown setting")
        values[name] = _coerce(raw, hints[name], var, from_text=True)

    for name, raw in (flags or {}).items():
        if raw is not None:
            values[name] = _coerce(raw, hints[name], f"--{name.replace('_', '-')}", from_text=False)

    config = cls(**values)
    check = getattr(config, "check", None)
    if check is not None:
        check()
    return config


def _coerce(raw: Any, hint: Any, where: str, *, from_text: bool) -> Any:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        if raw is None or (from_text and raw == ""):
            return None
        return _coerce(raw, inner[0], where, from_text=from_text)
    if origin is tuple:
        if from_text and isinstance(raw, str):
            raw = [part.strip() for part in raw.split(",") if part.strip()]
        if not isinstance(raw, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {raw!r}")
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        return tuple(_coerce(v, item, where, from_text=from_text) for v in raw)
    if hint is bool:
        if isinstance(raw, bool):
            return raw
        if from_text and raw.lower() in _TRUE | _FALSE:
            return raw.lower() in _TRUE
        raise ConfigError(f"{where}: expected true or false, got {raw!r}")
    if hint is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if from_text or isinstance(raw, str):
            try:
                return int(raw)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected an integer, got {raw!r}")
    if hint is float:
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return float(raw)
        if from_text or isinstance(raw, str):
            try:
                return float(raw)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {raw!r}")
    if hint is str:
        if isinstance(raw, str):
            return raw
        raise ConfigError(f"{where}: expected a string, got {raw!r}")
    if hint is Path:
        if isinstance(raw, str | Path):
            return Path(raw).expanduser()
        raise ConfigError(f"{where}: expected a path, got {raw!r}")
    raise TypeError(f"unsupported setting type {hint!r} for {where}")


def require(condition: bool, key: str, message: str) -> None:
    """For a config's ``check()``: raise ConfigError naming ``key`` unless ``condition``."""
    if not condition:
        raise ConfigError(f"{key}: {message}")


def load_process_settings(
    cls: type[T], *, section: str, config_file: Path | None, env: Mapping[str, str], flags: Mapping[str, Any]
) -> T:
    """The usual sources for a process: ``--config`` (else ``$INFERCDN_CONFIG``), env, flags."""
    path = config_file or (Path(env["INFERCDN_CONFIG"]) if env.get("INFERCDN_CONFIG") else None)
    return load_settings(cls, section=section, toml=read_toml(path) if path else {}, env=env, flags=flags)


def state_dir(env: Mapping[str, str]) -> Path:
    """Where a process keeps what outlives it (keys, enrollments): ``$XDG_STATE_HOME/infercdn``."""
    return Path(env.get("XDG_STATE_HOME") or "~/.local/state").expanduser() / "infercdn"
