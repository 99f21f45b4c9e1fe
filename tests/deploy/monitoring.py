"""Shared facts for the monitoring tests: where deploy/ is, and every metric name the code exports."""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path

from edge_worker.metrics import WorkerMetrics
from gateway.metrics import GatewayMetrics
from routing.balancer import Balancer
from routing.fleet import Fleet

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
METRIC_NAME = re.compile(r"\b(infercdn_[a-z0-9_]+)")
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",), "info": ("_info",)}


def exported_metric_names() -> set[str]:
    """Every sample name gateway and worker can expose (families exist before they have samples)."""
    names: set[str] = set()
    registries = (GatewayMetrics(Balancer(Fleet(), random.Random(0))).registry, WorkerMetrics().registry)
    for registry in registries:
        for family in registry.collect():
            names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
    return names


def referenced_metric_names(text: str) -> set[str]:
    return set(METRIC_NAME.findall(text))


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: install Debian's prometheus package ('make test' does)"
    return path
