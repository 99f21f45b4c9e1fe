"""One SHA-256 for a Hugging Face model directory: what a vLLM offer names, and a verifier checks.

A GGUF model is one file, and its digest is the file's. An HF model is a
directory: weights shards, ``config.json``, the tokenizer, the chat template.
Its digest is the SHA-256 of a manifest listing each of those files' own
SHA-256 and path, sorted, so the same files give the same digest wherever
they lie, and changing any of them (other weights, another template) changes
it. Hidden files (caches, locks) and documentation are not the model.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_NOT_THE_MODEL = ("readme", "license", "notice")
_CHUNK = 8 << 20


def directory_digest(folder: Path) -> str:
    """Blocking (it reads every byte): call it from a thread."""
    folder = folder.expanduser()
    lines = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and _is_model_file(p.relative_to(folder))):
        lines.append(f"{file_digest(path)}  {path.relative_to(folder).as_posix()}\n")
    if not lines:
        raise FileNotFoundError(f"no model files in {folder}")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _is_model_file(relative: Path) -> bool:
    if any(part.startswith(".") for part in relative.parts):
        return False
    name = relative.name.lower()
    return not (name.startswith(_NOT_THE_MODEL) or name.endswith(".md"))
