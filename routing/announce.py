"""What a worker tells gateways about itself: registration and heartbeats (msgpack).

A registration says who the worker is, where to reach it, what hardware it
runs on and what it offers; heartbeats then carry its load every few
seconds. Both are small typed records on the wire as msgpack maps; anything
malformed is an InvalidRequest (400), never a crash.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

import msgpack

from routing.advertise import url_parts
from routing.bounds import bounded_float, bounded_int, bounded_list, printable
from routing.errors import InvalidRequest
from routing.fleet import DIRECT, VIAS, ModelOffer, Worker
from routing.receipt import MAX_RECEIPTS_PER_HEARTBEAT
from routing.receipt import MAX_SEALED_CHARS as MAX_SEALED_RECEIPT_CHARS
from routing.wire import offer_from_json, offer_to_json

# What one worker may claim: far beyond real hardware, small enough for any arithmetic.
MAX_CAPACITY = 4096
MAX_OFFERS = 64
MAX_QUEUE_REPORTED = 1_000_000
MAX_TOKENS_PER_SECOND = 10_000_000.0

# A registration with MAX_OFFERS offers and every alias is well under this; checked before reading a body.
MAX_MESSAGE_BYTES = 256 * 1024

CONTENT_TYPE = "application/msgpack"
REGISTER_PATH = "/internal/v1/workers"
WORKER_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def heartbeat_path(worker_id: str) -> str:
    return f"{REGISTER_PATH}/{worker_id}/heartbeat"


def receipts_path(worker_id: str) -> str:
    return f"{REGISTER_PATH}/{worker_id}/receipts"


def worker_path(worker_id: str) -> str:
    return f"{REGISTER_PATH}/{worker_id}"


@dataclass(frozen=True, slots=True)
class Hardware:
    cpu: str = ""
    cores: int = 0
    memory_bytes: int = 0
    gpu: str = ""  # e.g. "NVIDIA H100 80GB HBM3"; empty on CPU-only hosts
    gpu_memory_bytes: int = 0

    def describe(self) -> str:
        if self.gpu:
            return f"{self.gpu} ({self.gpu_memory_bytes / 2**30:.0f} GiB)"
        return f"{self.cpu or 'CPU'}, {self.cores} cores"


@dataclass(frozen=True, slots=True)
class Registration:
    worker_id: str
    url: str  # where gateways reach it
    region: str
    runtime: str  # "llama.cpp", "vllm"
    hardware: Hardware
    capacity: int  # generations at once per model
    offers: tuple[ModelOffer, ...]
    via: str = DIRECT  # "tunnel": it cannot be dialled; requests come over the tunnel it opens

    def worker(self, *, source: str, bearer: str) -> Worker:
        """The fleet's record of it, as learnt from ``source`` (registry, consul)."""
        return Worker(
            id=self.worker_id,
            url=self.url,
            region=self.region,
            capacity=self.capacity,
            runtime=self.runtime,
            hardware=self.hardware.describe(),
            source=source,
            bearer=bearer,
            via=self.via,
        )


@dataclass(frozen=True, slots=True)
class Heartbeat:
    worker_id: str
    in_flight: int
    queued: int
    tokens_per_second: float = 0.0
    kv_cache_usage: float | None = None  # 0..1 where the runtime knows it
    receipts_after: int = 0  # the last receipt (sequence number) stored from this gateway


@dataclass(frozen=True, slots=True)
class ReceiptsAsk:
    """A worker a gateway knows through Consul asks for its usage receipts (it sends no heartbeats there);
    answered like a heartbeat: 204, or a ``HeartbeatAnswer`` with them."""

    worker_id: str
    receipts_after: int = 0


@dataclass(frozen=True, slots=True)
class HeartbeatAnswer:
    """A gateway's answer to a heartbeat when it has something to say (else 204, no body): usage receipts, or
    that it cannot dial the worker."""

    receipts: tuple[str, ...] = ()  # sealed (routing.receipt), oldest first
    # Its probes of the advertised URL fail while heartbeats arrive (a home router): dial a tunnel instead.
    unreachable: bool = False


@dataclass(frozen=True, slots=True)
class Welcome:
    """The gateway's answer to a registration: how often to heartbeat, and when it forgets."""

    heartbeat_interval_s: float
    ttl_s: float
    gateway_key: str = ""  # the gateway's public key: the worker accepts tokens it signs


def pack(record: Registration | Heartbeat | Welcome | HeartbeatAnswer | ReceiptsAsk) -> bytes:
    obj = asdict(record)
    if isinstance(record, Registration):
        obj["offers"] = [offer_to_json(o, 0) for o in record.offers]
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def unpack_registration(data: bytes) -> Registration:
    return registration_from_map(_map(data))


def registration_from_map(obj: dict[str, Any]) -> Registration:
    """A registration from its map (msgpack, or Consul Meta read back), every field bounded."""
    try:
        hardware = obj.get("hardware") or {}
        registration = Registration(
            worker_id=check_worker_id(_text(obj["worker_id"], "worker_id")),
            url=_text(obj["url"], "url").rstrip("/"),
            region=printable(obj.get("region", ""), "region", 64),
            runtime=printable(obj.get("runtime", ""), "runtime", 32),
            hardware=Hardware(
                cpu=printable(hardware.get("cpu", ""), "hardware.cpu", 128),
                cores=bounded_int(hardware.get("cores", 0), "hardware.cores", 0, 1 << 16),
                memory_bytes=bounded_int(hardware.get("memory_bytes", 0), "hardware.memory_bytes", 0, 1 << 60),
                gpu=printable(hardware.get("gpu", ""), "hardware.gpu", 128),
                gpu_memory_bytes=bounded_int(
                    hardware.get("gpu_memory_bytes", 0), "hardware.gpu_memory_bytes", 0, 1 << 60
                ),
            ),
            capacity=bounded_int(obj.get("capacity", 1), "capacity", 1, MAX_CAPACITY),
            offers=tuple(offer_from_json(o) for o in bounded_list(obj["offers"], "offers", MAX_OFFERS)),
            via=obj.get("via", DIRECT),
        )
        if registration.via not in VIAS:
            raise InvalidRequest("'via' must be direct or tunnel", param="via")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InvalidRequest(f"malformed registration: {exc!r}") from None
    url_parts(registration.url)  # scheme, host and port only
    return registration


def unpack_heartbeat(data: bytes) -> Heartbeat:
    obj = _map(data)
    try:
        usage = obj.get("kv_cache_usage")
        return Heartbeat(
            worker_id=check_worker_id(_text(obj["worker_id"], "worker_id")),
            in_flight=bounded_int(obj["in_flight"], "in_flight", 0, MAX_QUEUE_REPORTED),
            queued=bounded_int(obj["queued"], "queued", 0, MAX_QUEUE_REPORTED),
            tokens_per_second=bounded_float(
                obj.get("tokens_per_second", 0.0), "tokens_per_second", 0.0, MAX_TOKENS_PER_SECOND
            ),
            kv_cache_usage=None if usage is None else bounded_float(usage, "kv_cache_usage", 0.0, 1.0),
            receipts_after=bounded_int(obj.get("receipts_after", 0), "receipts_after", 0, (1 << 62) - 1),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidRequest(f"malformed heartbeat: {exc!r}") from None


def unpack_receipts_ask(data: bytes) -> ReceiptsAsk:
    obj = _map(data)
    try:
        return ReceiptsAsk(
            worker_id=check_worker_id(_text(obj["worker_id"], "worker_id")),
            receipts_after=bounded_int(obj.get("receipts_after", 0), "receipts_after", 0, (1 << 62) - 1),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidRequest(f"malformed receipts request: {exc!r}") from None


def unpack_heartbeat_answer(data: bytes) -> HeartbeatAnswer:
    obj = _map(data)
    try:
        receipts = bounded_list(obj.get("receipts", []), "receipts", MAX_RECEIPTS_PER_HEARTBEAT)
        if not all(isinstance(r, str) and len(r) <= MAX_SEALED_RECEIPT_CHARS for r in receipts):
            raise InvalidRequest("each receipt is sealed text", param="receipts")
        unreachable = obj.get("unreachable", False)
        if not isinstance(unreachable, bool):
            raise InvalidRequest("'unreachable' must be a boolean", param="unreachable")
        return HeartbeatAnswer(tuple(receipts), unreachable)
    except (KeyError, TypeError) as exc:
        raise InvalidRequest(f"malformed heartbeat answer: {exc!r}") from None


def unpack_welcome(data: bytes) -> Welcome:
    obj = _map(data)
    try:
        return Welcome(
            heartbeat_interval_s=bounded_float(obj["heartbeat_interval_s"], "heartbeat_interval_s", 0.05, 3600),
            ttl_s=bounded_float(obj["ttl_s"], "ttl_s", 0.1, 86400),
            gateway_key=printable(obj.get("gateway_key", ""), "gateway_key", 64),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidRequest(f"malformed welcome: {exc!r}") from None


def _map(data: bytes) -> dict[str, Any]:
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise InvalidRequest(f"the body is not msgpack: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidRequest("the body must be a msgpack map")
    return obj


def _text(value: Any, name: str) -> str:
    return printable(value, name, 256, required=True)


def check_worker_id(worker_id: str) -> str:
    """Ids go in URL paths and logs: letters, digits and ``._:-`` only."""
    if not WORKER_ID.fullmatch(worker_id):
        raise InvalidRequest("a worker id is 1-128 of letters, digits and ._:-", param="worker_id")
    return worker_id
