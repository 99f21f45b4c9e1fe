"""What discovery says about the fleet: changes, applied in one place (``Balancer.apply``).

Static upstreams, the embedded registry and Consul never touch ``Fleet``
themselves; each yields ``Upsert`` and ``Remove`` (as tower's ``Change``), so
there is one writer of fleet state and one place that clears what the
gateway learnt about a worker that left or moved.
"""

from __future__ import annotations

from dataclasses import dataclass

from routing.fleet import ModelOffer, Worker


@dataclass(frozen=True, slots=True)
class Upsert:
    worker: Worker
    offers: tuple[ModelOffer, ...]


@dataclass(frozen=True, slots=True)
class Remove:
    worker_id: str


Change = Upsert | Remove
