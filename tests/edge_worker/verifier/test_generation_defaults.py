"""What a model directory's generation_config.json may make a vLLM worker sample with, read as vLLM reads it."""

from __future__ import annotations

import json
from pathlib import Path

from edge_worker.verifier.generation_defaults import GenerationDefaults


def test_the_settings_a_directory_defaults_are_read_and_neutral_ones_left_out(tmp_path: Path) -> None:
    # Qwen2.5-Instruct's, plus neutral values and fields vLLM does not default sampling from.
    config = {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.05, "min_p": 0.0}
    (tmp_path / "generation_config.json").write_text(json.dumps({**config, "do_sample": True, "eos_token_id": 2}))
    assert GenerationDefaults.read(tmp_path).set == {
        "temperature": 0.7,
        "top_p": 0.8,
        "top_k": 20.0,
        "repetition_penalty": 1.05,
    }
    neutral = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0, "bos_token_id": 1}
    (tmp_path / "generation_config.json").write_text(json.dumps(neutral))
    assert GenerationDefaults.read(tmp_path).set == {}


def test_no_file_or_an_unreadable_one_sets_nothing(tmp_path: Path) -> None:
    assert GenerationDefaults.read(tmp_path).set == {}
    for text in ("{not json", "[0.7]", '{"temperature": "0.7", "top_p": true}'):
        (tmp_path / "generation_config.json").write_text(text)
        assert GenerationDefaults.read(tmp_path).set == {}, text


def test_a_request_must_state_each_setting_the_directory_defaults() -> None:
    defaults = GenerationDefaults({"temperature": 0.7, "top_p": 0.8})
    expected = "generation_config.json sets top_p = 0.8 and the request does not say"
    assert defaults.unstated({"temperature": 1.0}) == expected
    assert defaults.unstated({"temperature": 1.0, "top_p": None}) is not None  # null: vLLM's default again
    assert defaults.unstated({"temperature": 1.0, "top_p": 1.0}) is None
    assert GenerationDefaults({"repetition_penalty": 1.05}).unstated({"temperature": 1.0}) is not None
    assert GenerationDefaults().unstated({}) is None
