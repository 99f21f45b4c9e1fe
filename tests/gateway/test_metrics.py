"""The gateway's metrics: series named by workers are capped, and go when the fleet no longer has them."""

from __future__ import annotations

import random

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import GatewayMetrics
from routing.balancer import Balancer
from tests.routing.fleets import fleet_of


def labels_of(metrics: GatewayMetrics, family: str, label: str) -> set[str]:
    text = generate_latest(metrics.registry).decode()
    return {s.labels[label] for f in text_string_to_metric_families(text) if f.name == family for s in f.samples}


def test_worker_series_are_capped_and_removed_when_the_worker_leaves() -> None:
    fleet, _ = fleet_of("a", "b", "c")
    metrics = GatewayMetrics(Balancer(fleet, random.Random(0)), label_values=2)
    for worker in ("a", "b", "c"):
        metrics.count_usage(worker, "key-1", 10, 5)
        metrics.count_decision(worker)
    assert labels_of(metrics, "infercdn_gateway_usage_tokens", "worker") == {"a", "b", "other"}
    assert labels_of(metrics, "infercdn_gateway_routing_decisions", "worker") == {"a", "b", "other"}
    fleet.remove("a")
    metrics.forget_departed()
    assert labels_of(metrics, "infercdn_gateway_usage_tokens", "worker") == {"b", "other"}
    metrics.count_decision("c")  # the freed slot goes to the next worker named
    assert labels_of(metrics, "infercdn_gateway_routing_decisions", "worker") == {"b", "c", "other"}
