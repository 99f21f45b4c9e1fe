"""Key rotation a worker does itself: the handover file, its wire text, and what it proves."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from edge_worker.config import WorkerConfig
from routing.identity import Identity, KeyFileError, load_existing, load_or_create
from routing.key_handover import handed_over_by, handover_path, load_handover, rotate


def test_a_rotation_replaces_the_key_and_the_old_one_hands_over_to_the_new(tmp_path: Path) -> None:
    path = tmp_path / "worker.key"
    first = load_or_create(path)
    old, new = rotate(path)
    assert old.public_key == first.public_key
    assert load_existing(path).public_key == new.public_key != first.public_key
    handover = load_handover(path, new)
    assert handover is not None and handover.first_fingerprint == first.fingerprint
    assert handed_over_by(handover.text, new.public_key) == first.public_key
    for file in (path, handover_path(path)):
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert not list(tmp_path.glob("*.tmp"))


def test_a_handover_proves_nothing_for_any_other_key(tmp_path: Path) -> None:
    path = tmp_path / "worker.key"
    load_or_create(path)
    _, new = rotate(path)
    handover = load_handover(path, new)
    assert handover is not None
    stranger = Identity.generate()
    assert handed_over_by(handover.text, stranger.public_key) is None
    assert load_handover(path, stranger) is None  # a handover kept for another key is not this key's
    key_text, signature_text = handover.text.split(".")
    forged = f"{stranger.public_text}.{signature_text}"
    assert handed_over_by(forged, new.public_key) is None
    for junk in ("", ".", "a.b", f"{key_text}.{signature_text}.x", "é" * 40, f"{new.public_text}.{signature_text}"):
        assert handed_over_by(junk, new.public_key) is None


def test_the_default_worker_id_survives_rotations(tmp_path: Path) -> None:
    path = tmp_path / "worker.key"
    config = WorkerConfig(gateways=("http://gw",))
    worker_id = config.id_for(load_or_create(path))
    for _ in range(2):  # the second rotation still names the first key
        _, new = rotate(path)
        handover = load_handover(path, new)
        assert config.id_for(new, handover) == worker_id
    assert config.id_for(new) != worker_id


def test_rotating_without_a_key_or_with_a_broken_handover_file_says_why(tmp_path: Path) -> None:
    path = tmp_path / "worker.key"
    with pytest.raises(KeyFileError, match="no key file"):
        rotate(path)
    identity = load_or_create(path)
    handover_path(path).write_text("{not json")
    with pytest.raises(KeyFileError, match="handover"):
        load_handover(path, identity)
