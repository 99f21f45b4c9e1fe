"""Worker keys on disk, and the ids made from them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge_worker.config import WorkerConfig
from routing.identity import Identity, KeyFileError, load_or_create, verify


def test_a_key_is_made_once_readable_by_its_owner_only_and_loaded_again(tmp_path: Path) -> None:
    path = tmp_path / "state" / "worker.key"
    made = load_or_create(path)
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    again = load_or_create(path)
    assert again.public_key == made.public_key
    signature = again.sign(b"message")
    assert verify(made.public_key, signature, b"message") and not verify(made.public_key, signature, b"other")
    assert "PRIVATE" not in repr(made) and made.fingerprint in repr(made)


def test_a_key_file_others_can_read_or_that_is_not_a_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "worker.key"
    load_or_create(path)
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_or_create(path)
    path.write_text("not a key")
    os.chmod(path, 0o600)
    with pytest.raises(KeyFileError, match="PEM"):
        load_or_create(path)


def test_two_workers_on_hosts_with_the_same_name_and_port_get_different_ids() -> None:
    """Honest workers on two machines with the same hostname and port used to overwrite each other."""
    config = WorkerConfig(port=8081)
    key = Identity.generate()
    first, second = config.id_for(key), config.id_for(Identity.generate())
    assert first != second and first.endswith("-" + key.fingerprint[:12])
    assert WorkerConfig(worker_id="chosen").id_for(Identity.generate()) == "chosen"
