"""Per-model SLO floors an operator sets: a request goes only to workers meeting them, unless none does.

    model_slos = ["llama-3-8b min_availability=0.99 max_ttft_p99_s=2.5", "* min_availability=0.95"]

A line names a model (or ``*``: every model without a line of its own) and
one or both floors. They are judged on the window routing uses (the last
hour), like the SLO weights: a worker with too few samples for a verdict
passes, and TTFT p99 is the upper edge of its histogram bin (up to 30% high,
never flattering). Where no worker of a model meets its floor, the request
still goes to the best of them: a floor steers traffic, it does not refuse it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from routing.settings import ConfigError
from routing.slo import SloReport

ALL_MODELS = "*"
_KEYS = ("min_availability", "max_ttft_p99_s")


@dataclass(frozen=True, slots=True)
class SloFloor:
    min_availability: float | None = None  # share of probes answered
    max_ttft_p99_s: float | None = None

    def met_by(self, report: SloReport | None, min_samples: int) -> bool:
        if report is None:
            return True
        if (
            self.min_availability is not None
            and report.probes >= min_samples
            and report.availability is not None
            and report.availability < self.min_availability
        ):
            return False
        return not (
            self.max_ttft_p99_s is not None
            and report.requests >= min_samples
            and report.ttft_p99_s is not None
            and report.ttft_p99_s > self.max_ttft_p99_s
        )


@dataclass(frozen=True, slots=True)
class SloFloors:
    by_model: Mapping[str, SloFloor] = field(default_factory=dict)

    def of(self, model: str) -> SloFloor | None:
        return self.by_model.get(model) or self.by_model.get(ALL_MODELS)


def parse_slo_floors(lines: Iterable[str]) -> SloFloors:
    """``model_slos`` lines, each "MODEL KEY=VALUE…"; raises ConfigError naming what is wrong."""
    floors: dict[str, SloFloor] = {}
    for line in lines:
        model, *pairs = line.split()
        where = f"gateway.model_slos: {line!r}"
        if model in floors:
            raise ConfigError(f"{where}: model {model!r} has two lines")
        if not pairs:
            raise ConfigError(f"{where}: expected {' and/or '.join(f'{k}=…' for k in _KEYS)} after the model")
        values: dict[str, float] = {}
        for pair in pairs:
            key, sep, raw = pair.partition("=")
            if not sep or key not in _KEYS:
                raise ConfigError(f"{where}: expected one of {', '.join(_KEYS)} as KEY=VALUE, got {pair!r}")
            try:
                value = float(raw)
            except ValueError:
                raise ConfigError(f"{where}: {key} must be a number, got {raw!r}") from None
            values[key] = value
        availability, ttft = values.get("min_availability"), values.get("max_ttft_p99_s")
        if availability is not None and not 0 < availability <= 1:
            raise ConfigError(f"{where}: min_availability must be above 0 and at most 1")
        if ttft is not None and not (ttft > 0 and math.isfinite(ttft)):
            raise ConfigError(f"{where}: max_ttft_p99_s must be a positive number of seconds")
        floors[model] = SloFloor(availability, ttft)
    return SloFloors(floors)
