"""Reading one value out of a Prometheus text exposition, for tests."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def scrape(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        text: str = resp.read().decode()
        return text


def sample(url: str, name: str, **labels: str) -> float:
    """The value of the sample ``name`` with these labels (0 when absent)."""
    for family in text_string_to_metric_families(scrape(url)):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0
