"""Client API keys: a file of hashed keys, and ``infercdn keys create``.

A key looks like ``icdn-<id>-<secret>``. Only its SHA-256 is stored (a key
has 256 random bits, so a fast hash is safe), next to its id, a name and its
limits. Checking a key finds the record by id and compares hashes in
constant time; the key itself is printed once, when created, and never
logged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from routing.budget import Budget
from routing.ratelimit import Limits
from routing.settings import ConfigError

PREFIX = "icdn"
NO_BUDGET = Budget()


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    sha256: str
    created: int
    requests_per_minute: int = 0
    tokens_per_minute: int = 0
    tokens_per_day: int = 0  # UTC day
    tokens_per_month: int = 0  # calendar month, UTC

    @property
    def limits(self) -> Limits:
        return Limits(self.requests_per_minute, self.tokens_per_minute)

    @property
    def budget(self) -> Budget:
        return Budget(self.tokens_per_day, self.tokens_per_month)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore:
    def __init__(self, keys: tuple[ApiKey, ...] = (), *, single: ApiKey | None = None):
        self._by_id = {k.id: k for k in keys}
        self._single = single  # the one key of the api_key setting, if any

    def __len__(self) -> int:
        return len(self._by_id) + (self._single is not None)

    def records(self) -> tuple[ApiKey, ...]:
        return tuple(self._by_id.values())

    def budgeted(self) -> tuple[ApiKey, ...]:
        """Keys with a token budget, the api_key setting's included."""
        every = (*self._by_id.values(), *((self._single,) if self._single is not None else ()))
        return tuple(k for k in every if k.budget)

    def add(self, key: ApiKey) -> None:
        self._by_id[key.id] = key

    def check(self, presented: str) -> ApiKey | None:
        digest = _digest(presented).encode()
        if self._single is not None and hmac.compare_digest(digest, self._single.sha256.encode()):
            return self._single
        parts = presented.split("-", 2)
        record = self._by_id.get(parts[1]) if len(parts) == 3 and parts[0] == PREFIX else None
        # Hash and compare even for an unknown id, so timing says nothing about ids.
        expected = record.sha256 if record is not None else "0" * 64
        matches = hmac.compare_digest(digest, expected.encode())
        return record if matches and record is not None else None

    @classmethod
    def load(cls, path: Path | None, *, single: ApiKey | None = None) -> KeyStore:
        if path is None or not path.exists():
            return cls(single=single)
        try:
            data = json.loads(path.read_text())
            return cls(tuple(ApiKey(**entry) for entry in data["keys"]), single=single)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"gateway.api_keys_file: {path} is not a keys file ({type(exc).__name__})") from None

    def save(self, path: Path) -> None:
        payload = json.dumps({"keys": [asdict(k) for k in self._by_id.values()]}, indent=2)  # never the single key
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".keys-")
        with os.fdopen(fd, "w") as out:  # mkstemp makes it 0600: hashes are nobody else's business
            out.write(payload + "\n")
        os.replace(tmp, path)


def single_key(key: str, limits: Limits, budget: Budget = NO_BUDGET) -> ApiKey:
    """The one key given by the ``api_key`` setting (env ``INFERCDN_GATEWAY_API_KEY``), as a record."""
    return ApiKey(
        "setting", "api_key setting", _digest(key), 0, limits.requests_per_minute, limits.tokens_per_minute,
        budget.tokens_per_day, budget.tokens_per_month,
    )  # fmt: skip


def create_key(store: KeyStore, name: str, limits: Limits, budget: Budget = NO_BUDGET) -> tuple[str, ApiKey]:
    """A new key (shown once) and its record (stored)."""
    key_id = secrets.token_hex(4)
    key = f"{PREFIX}-{key_id}-{secrets.token_urlsafe(32)}"
    record = ApiKey(
        key_id, name, _digest(key), int(time.time()), limits.requests_per_minute, limits.tokens_per_minute,
        budget.tokens_per_day, budget.tokens_per_month,
    )  # fmt: skip
    store.add(record)
    return key, record
