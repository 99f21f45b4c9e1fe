"""What a ledger store does, whichever database holds it; and the rollup both compute the same way.

Each entry's raw row is inserted unless its ``entry_id`` is there already,
and only the rows actually inserted are added to the hourly rollup, by the
database, in the same statement (``add_hourly_row`` in a SQLite trigger,
``add_hourly_from`` in PostgreSQL's one statement a batch). A batch written
twice (a retry after a lost commit) therefore counts once, and no Python
runs per row for the rollup.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.ledger.entry import FLEET_ERROR_STATUS, Dimension, LedgerEntry, Receivable, UsageRow

# A report's dimension → the rollup's column (fixed names: nothing a caller sends reaches the SQL).
COLUMNS: dict[Dimension, str] = {
    "worker": "worker_id",
    "key": "key_id",
    "model": "model",
    "quantization": "quantization",
    "hour": "hour",
}

# The raw table after its sequence number, in ``raw_values`` order (an entry's own fields, then who
# wrote it and its hour), each with a portable type.
RAW_TABLE = (
    ("entry_id", "text"), ("request_id", "text"), ("at", "real"), ("key_id", "text"), ("worker_id", "text"),
    ("model", "text"), ("quantization", "text"), ("status", "int"), ("prompt_tokens", "int"),
    ("cached_tokens", "int"), ("completion_tokens", "int"), ("worker_seconds", "real"), ("ttft_s", "real?"),
    ("gateway", "text"), ("hour", "int"),
)  # fmt: skip
assert tuple(name for name, _ in RAW_TABLE[: len(LedgerEntry._fields)]) == LedgerEntry._fields
RAW_COLUMNS = ", ".join(name for name, _ in RAW_TABLE)
# What a receipt is made of, read back in this order.
RECEIPT_COLUMNS = (
    "seq, entry_id, request_id, at, key_id, worker_id, model, quantization, status, "
    "prompt_tokens, cached_tokens, completion_tokens, worker_seconds, ttft_s"
)
HOURLY_KEY = ("hour", "worker_id", "key_id", "model", "quantization")
# Raw columns the rollup sums into columns of the same names.
SUMMED = ("prompt_tokens", "cached_tokens", "completion_tokens", "worker_seconds")
HOURLY_SUMS = ("requests", "errors", *SUMMED)
# What the rollup reads of a raw row.
ROLLUP_INPUTS = (*HOURLY_KEY, "status", *SUMMED)
_HOURLY_TYPES = {"hour": "int", "worker_seconds": "real"}  # the rest: text (key), int (sums)


def add_hourly_from(rows: str) -> str:
    """The upsert adding the rollup of ``rows`` (a table, with its ``where``: raw rows just inserted) to what
    is there, in the rollup's key order (so concurrent writers lock rows in one order)."""
    key = ", ".join(HOURLY_KEY)
    sums = ("count(*)", f"sum({_error('status')})", *(f"sum({c})" for c in SUMMED))
    return _add_hourly(f"select {key}, {', '.join(sums)} from {rows} group by {key} order by {key}")


def add_hourly_row(row: str) -> str:
    """The upsert adding one raw row (``row``: its name, e.g. a trigger's ``new``) to the rollup."""
    values = (*(f"{row}.{c}" for c in HOURLY_KEY), "1", _error(f"{row}.status"), *(f"{row}.{c}" for c in SUMMED))
    return _add_hourly(f"values ({', '.join(values)})")


def _error(status: str) -> str:
    return f"case when {status} >= {FLEET_ERROR_STATUS} then 1 else 0 end"


def _add_hourly(rows: str) -> str:
    return (
        f"insert into usage_hourly ({', '.join(HOURLY_KEY + HOURLY_SUMS)}) {rows} "
        f"on conflict ({', '.join(HOURLY_KEY)}) do update set "
        + ", ".join(f"{c} = usage_hourly.{c} + excluded.{c}" for c in HOURLY_SUMS)
    )


def schema(types: dict[str, str], sequence: str, receipts_index: str) -> str:
    """Both tables and their indexes in one dialect: ``types`` maps int, real and text to its names;
    ``sequence`` declares the raw table's ordering key; ``receipts_index`` is the index a worker's receipts
    are read by, in order (``RECEIPTS_BY_GATEWAY`` where several gateways write)."""

    def column(name: str, kind: str) -> str:
        return f"{name} {types[kind.rstrip('?')]}{'' if kind.endswith('?') else ' not null'}"

    raw = [column(n, t) + (" unique" if n == "entry_id" else "") for n, t in RAW_TABLE]
    hourly = [column(n, _HOURLY_TYPES.get(n, "text")) for n in HOURLY_KEY]
    hourly += [column(n, _HOURLY_TYPES.get(n, "int")) for n in HOURLY_SUMS]
    return f"""
create table if not exists usage_raw (seq {sequence}, {", ".join(raw)});
{receipts_index};
create index if not exists usage_raw_at on usage_raw (at);
create table if not exists usage_hourly ({", ".join(hourly)}, primary key ({", ".join(HOURLY_KEY)}));
"""


RECEIPTS_BY_GATEWAY = "create index if not exists usage_raw_receipts on usage_raw (gateway, worker_id, seq)"


def raw_values(entry: LedgerEntry, gateway: str) -> tuple[object, ...]:
    return (*entry, gateway, entry.hour)


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
