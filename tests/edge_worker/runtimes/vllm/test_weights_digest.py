"""A model directory's digest: the same files give the same digest anywhere; any change to the model changes it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edge_worker.runtimes.vllm.weights_digest import directory_digest


def model_dir(folder: Path) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    (folder / "model-00001-of-00002.safetensors").write_bytes(b"\x01" * 1000)
    (folder / "model-00002-of-00002.safetensors").write_bytes(b"\x02" * 1000)
    (folder / "tokenizer.json").write_text("{}")
    return folder


def test_the_same_files_anywhere_give_the_same_digest_and_docs_and_caches_do_not_count(tmp_path: Path) -> None:
    one = model_dir(tmp_path / "one")
    two = shutil.copytree(one, tmp_path / "elsewhere" / "two")
    (two / "README.md").write_text("# a model card")
    (two / ".cache").mkdir()
    (two / ".cache" / "lock").write_text("x")
    assert directory_digest(one) == directory_digest(two)
    assert len(directory_digest(one)) == 64


@pytest.mark.parametrize(
    "change",
    [
        lambda d: (d / "model-00002-of-00002.safetensors").write_bytes(b"\x02" * 999 + b"\x03"),  # other weights
        lambda d: (d / "chat_template.jinja").write_text("{{ messages }}"),  # another template
        lambda d: (d / "tokenizer.json").rename(d / "tokenizer2.json"),  # a file under another name
        lambda d: (d / "config.json").unlink(),
    ],
)
def test_any_change_to_the_model_changes_it(tmp_path: Path, change: object) -> None:
    folder = model_dir(tmp_path / "m")
    before = directory_digest(folder)
    change(folder)  # type: ignore[operator]
    assert directory_digest(folder) != before


def test_a_directory_without_model_files_has_no_digest(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("nothing here")
    with pytest.raises(FileNotFoundError):
        directory_digest(tmp_path)
