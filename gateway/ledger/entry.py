"""What the ledger records of one request, and what a usage report adds up."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

HOUR_S = 3600
# From this status on, a request failed on the fleet's side (rollups count these as errors; a client's
# own 4xx is not an error of the fleet).
FLEET_ERROR_STATUS = 500

# How a usage report groups its rows; each is a column of the hourly rollup.
Dimension = Literal["worker", "key", "model", "quantization", "hour"]
DIMENSIONS: tuple[Dimension, ...] = ("worker", "key", "model", "quantization", "hour")


class LedgerEntry(NamedTuple):
    """One routed request, as the gateway saw it end.

    A named tuple, not a dataclass: one is made per request on the event loop (a frozen dataclass sets
    each field through ``object.__setattr__``, three times the cost), and it is its raw row as it stands.
    """

    entry_id: str  # made by the gateway for each request: the idempotency key (a client's request id is not)
    request_id: str
    at: float  # wall clock (Unix s) when the answer ended
    key_id: str  # the client's API key id; "" on an open gateway
    worker_id: str  # the worker that answered (or was tried last); "" if none was tried
    model: str
    quantization: str
    status: int
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    worker_seconds: float  # from the first attempt's send to the end: the serving time the request took
    ttft_s: float | None  # None when no first byte came, or the answer was not a stream

    @property
    def hour(self) -> int:
        return int(self.at // HOUR_S) * HOUR_S


@dataclass(frozen=True, slots=True)
class UsageRow:
    """Totals for one value of the report's dimension."""

    group: str  # a worker id, key id, model, quantization, or an hour (ISO 8601, UTC)
    requests: int
    errors: int
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    worker_seconds: float

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_json(self) -> dict[str, object]:
        return {
            "group": self.group,
            "requests": self.requests,
            "errors": self.errors,
            "prompt_tokens": self.prompt_tokens,
            "cached_tokens": self.cached_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "gpu_seconds": round(self.worker_seconds, 3),
        }


@dataclass(frozen=True, slots=True)
class Receivable:
    """A ledger row owed to its worker as a receipt: its sequence number orders a worker's cursor."""

    seq: int
    entry: LedgerEntry
