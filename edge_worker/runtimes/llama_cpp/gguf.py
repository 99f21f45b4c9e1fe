"""A reader for GGUF metadata: the key-value header, without loading weights.

Lets the worker learn a model's name, quantization and trained context
before sizing its KV cache, and costs milliseconds, not a model load.
Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

from edge_worker.runtimes.base import ModelLoadError

_MAGIC = b"GGUF"
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
# Arrays longer than this (token tables) are skipped, not kept.
_MAX_KEPT_ARRAY = 64


class GgufError(ModelLoadError):
    """The file is not a readable GGUF file."""


def read_metadata(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return _read(f)
    except (OSError, struct.error, UnicodeDecodeError) as exc:
        raise GgufError(f"{path}: not a readable GGUF file ({exc})") from None


def _read(f: BinaryIO) -> dict[str, Any]:
    if f.read(4) != _MAGIC:
        raise GgufError("bad magic (not a GGUF file)")
    (version,) = struct.unpack("<I", f.read(4))
    if version < 2:
        raise GgufError(f"GGUF version {version} is too old")
    _tensor_count, kv_count = struct.unpack("<QQ", f.read(16))
    metadata: dict[str, Any] = {}
    for _ in range(kv_count):
        key = _string(f)
        (value_type,) = struct.unpack("<I", f.read(4))
        metadata[key] = _value(f, value_type)
    return metadata


def _string(f: BinaryIO) -> str:
    (length,) = struct.unpack("<Q", f.read(8))
    return f.read(length).decode("utf-8")


def _value(f: BinaryIO, value_type: int) -> Any:
    if value_type == _STRING:
        return _string(f)
    if value_type == _ARRAY:
        item_type, count = struct.unpack("<IQ", f.read(12))
        if item_type in _SCALARS and count > _MAX_KEPT_ARRAY:
            f.seek(struct.calcsize(_SCALARS[item_type]) * count, 1)
            return None
        items = [_value(f, item_type) for _ in range(count)]
        return items if count <= _MAX_KEPT_ARRAY else None
    fmt = _SCALARS.get(value_type)
    if fmt is None:
        raise GgufError(f"unknown metadata value type {value_type}")
    return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]
