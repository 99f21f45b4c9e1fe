"""What a ledger store does, whichever database holds it; and the rollup both compute the same way.

A batch is written in one transaction: each entry's raw row is inserted
unless its ``entry_id`` is there already, and only the rows actually inserted
are added to the hourly rollup. A batch written twice (a retry after a lost
commit) therefore counts once.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.ledger.entry import Dimension, LedgerEntry, Receivable, UsageRow

# A report's dimension → the rollup's column (fixed names: nothing a caller sends reaches the SQL).
COLUMNS: dict[Dimension, str] = {
    "worker": "worker_id",
    "key": "key_id",
    "model": "model",
    "quantization": "quantization",
    "hour": "hour",
}

# The raw table after its sequence number, in ``raw_values`` order, each with a portable type.
RAW_TABLE = (
    ("entry_id", "text"), ("gateway", "text"), ("request_id", "text"), ("at", "real"), ("hour", "int"),
    ("key_id", "text"), ("worker_id", "text"), ("model", "text"), ("quantization", "text"), ("status", "int"),
    ("prompt_tokens", "int"), ("cached_tokens", "int"), ("completion_tokens", "int"),
    ("worker_seconds", "real"), ("ttft_s", "real?"),
)  # fmt: skip
RAW_COLUMNS = ", ".join(name for name, _ in RAW_TABLE)
# What a receipt is made of, read back in this order.
RECEIPT_COLUMNS = (
    "seq, entry_id, request_id, at, key_id, worker_id, model, quantization, status, "
    "prompt_tokens, cached_tokens, completion_tokens, worker_seconds, ttft_s"
)
HOURLY_KEY = ("hour", "worker_id", "key_id", "model", "quantization")
HOURLY_SUMS = ("requests", "errors", "prompt_tokens", "cached_tokens", "completion_tokens", "worker_seconds")
_HOURLY_TYPES = {"hour": "int", "worker_seconds": "real"}  # the rest: text (key), int (sums)


def add_hourly(placeholders: Sequence[str]) -> str:
    """The upsert adding rollup rows to what is there, with the dialect's placeholders (one per column)."""
    return (
        f"insert into usage_hourly ({', '.join(HOURLY_KEY + HOURLY_SUMS)}) values ({', '.join(placeholders)}) "
        f"on conflict ({', '.join(HOURLY_KEY)}) do update set "
        + ", ".join(f"{c} = usage_hourly.{c} + excluded.{c}" for c in HOURLY_SUMS)
    )


def schema(types: dict[str, str], sequence: str) -> str:
    """Both tables and their indexes in one dialect: ``types`` maps int, real and text to its names;
    ``sequence`` declares the raw table's ordering key."""

    def column(name: str, kind: str) -> str:
        return f"{name} {types[kind.rstrip('?')]}{'' if kind.endswith('?') else ' not null'}"

    raw = [column(n, t) + (" unique" if n == "entry_id" else "") for n, t in RAW_TABLE]
    hourly = [column(n, _HOURLY_TYPES.get(n, "text")) for n in HOURLY_KEY]
    hourly += [column(n, _HOURLY_TYPES.get(n, "int")) for n in HOURLY_SUMS]
    return f"""
create table if not exists usage_raw (seq {sequence}, {", ".join(raw)});
create index if not exists usage_raw_receipts on usage_raw (gateway, worker_id, seq);
create index if not exists usage_raw_at on usage_raw (at);
create table if not exists usage_hourly ({", ".join(hourly)}, primary key ({", ".join(HOURLY_KEY)}));
"""


def raw_values(entry: LedgerEntry, gateway: str) -> tuple[object, ...]:
    e = entry
    return (
        e.entry_id,
        gateway,
        e.request_id,
        e.at,
        e.hour,
        e.key_id,
        e.worker_id,
        e.model,
        e.quantization,
        e.status,
        e.prompt_tokens,
        e.cached_tokens,
        e.completion_tokens,
        e.worker_seconds,
        e.ttft_s,
    )


def receivable(row: Sequence[object]) -> Receivable:
    seq, entry_id, request_id, at, key_id, worker_id, model, quant, status, prompt, cached, completion, secs, ttft = row
    entry = LedgerEntry(
        entry_id=str(entry_id),
        request_id=str(request_id),
        at=float(at),  # type: ignore[arg-type]
        key_id=str(key_id),
        worker_id=str(worker_id),
        model=str(model),
        quantization=str(quant),
        status=int(status),  # type: ignore[call-overload]
        prompt_tokens=int(prompt),  # type: ignore[call-overload]
        cached_tokens=int(cached),  # type: ignore[call-overload]
        completion_tokens=int(completion),  # type: ignore[call-overload]
        worker_seconds=float(secs),  # type: ignore[arg-type]
        ttft_s=None if ttft is None else float(ttft),  # type: ignore[arg-type]
    )
    return Receivable(int(seq), entry)  # type: ignore[call-overload]


@dataclass(slots=True)
class HourlySums:
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    worker_seconds: float = 0.0

    def add(self, e: LedgerEntry) -> None:
        self.requests += 1
        self.errors += e.error
        self.prompt_tokens += e.prompt_tokens
        self.cached_tokens += e.cached_tokens
        self.completion_tokens += e.completion_tokens
        self.worker_seconds += e.worker_seconds


def rollup(entries: Iterable[LedgerEntry]) -> list[tuple[object, ...]]:
    """The hourly rows these entries add, sorted (so concurrent writers lock rows in one order)."""
    groups: dict[tuple[int, str, str, str, str], HourlySums] = {}
    for e in entries:
        groups.setdefault((e.hour, e.worker_id, e.key_id, e.model, e.quantization), HourlySums()).add(e)
    return [
        (*key, s.requests, s.errors, s.prompt_tokens, s.cached_tokens, s.completion_tokens, s.worker_seconds)
        for key, s in sorted(groups.items())
    ]


@dataclass(frozen=True, slots=True)
class Outcome:
    worker_id: str
    at: float
    status: int
    ttft_s: float | None


OUTCOMES_QUERY = "select worker_id, at, status, ttft_s from usage_raw where at >= {} and worker_id <> '' order by at"


def outcome_of(row: Sequence[object]) -> Outcome:
    worker_id, at, status, ttft = row
    return Outcome(str(worker_id), float(at), int(status), None if ttft is None else float(ttft))  # type: ignore[arg-type, call-overload]


def usage_row(row: Sequence[object], dimension: Dimension) -> UsageRow:
    group, requests, errors, prompt, cached, completion, seconds = row
    return UsageRow(
        group=_hour_text(int(group)) if dimension == "hour" else str(group),  # type: ignore[call-overload]
        requests=int(requests),  # type: ignore[call-overload]
        errors=int(errors),  # type: ignore[call-overload]
        prompt_tokens=int(prompt),  # type: ignore[call-overload]
        cached_tokens=int(cached),  # type: ignore[call-overload]
        completion_tokens=int(completion),  # type: ignore[call-overload]
        worker_seconds=float(seconds),  # type: ignore[arg-type]
    )


def _hour_text(hour: int) -> str:
    return datetime.datetime.fromtimestamp(hour, datetime.UTC).strftime("%Y-%m-%dT%H:00Z")


class LedgerStore(Protocol):
    async def write(self, entries: Sequence[LedgerEntry], gateway: str) -> int:
        """Record a batch in one transaction; returns how many were new."""

    async def usage(self, dimension: Dimension, since_hour: int) -> list[UsageRow]: ...

    async def receivables(self, gateway: str, worker_id: str, after_seq: int, limit: int) -> list[Receivable]:
        """This gateway's rows for one worker after a sequence number, oldest first."""

    async def outcomes_since(self, since: float) -> list[Outcome]:
        """Each request's worker, end time, status and TTFT from ``since`` on, oldest first (SLOs restart from it)."""

    async def prune(self, raw_before: float, hourly_before: int) -> None: ...

    async def close(self) -> None: ...
