"""Usage reports from the ledger: ``GET /admin/v1/usage`` and ``infercdn usage``.

``by`` is one of worker, key, model, quantization, hour; ``since`` a span
back from now (``90m``, ``24h``, ``7d``), counted in whole hours: the report
starts at the top of the hour that span reaches into.
"""

from __future__ import annotations

import csv
import io
import json
import time
import urllib.parse
from typing import Any

from aiohttp import web

from gateway.api import STATE
from gateway.fleet_table import admin_call
from gateway.ledger.entry import DIMENSIONS, HOUR_S, Dimension, UsageRow
from routing.errors import Forbidden, InvalidRequest
from routing.spans import span_seconds

FIELDS = ("group", "requests", "errors", "prompt_tokens", "cached_tokens", "completion_tokens", "total_tokens")


def since_seconds(text: str) -> int:
    seconds = span_seconds(text)
    if seconds is None:
        raise InvalidRequest(f"'since' is a span like 90m, 24h or 7d, not {text[:32]!r}", param="since")
    return seconds


def dimension_of(text: str) -> Dimension:
    for dimension in DIMENSIONS:
        if text == dimension:
            return dimension
    raise InvalidRequest(f"'by' must be one of {', '.join(DIMENSIONS)}", param="by")


def total(rows: list[UsageRow]) -> UsageRow:
    return UsageRow(
        group="total",
        requests=sum(r.requests for r in rows),
        errors=sum(r.errors for r in rows),
        prompt_tokens=sum(r.prompt_tokens for r in rows),
        cached_tokens=sum(r.cached_tokens for r in rows),
        completion_tokens=sum(r.completion_tokens for r in rows),
        worker_seconds=sum(r.worker_seconds for r in rows),
    )


async def usage(request: web.Request) -> web.Response:
    ledger = request.app[STATE].ledger
    if ledger is None:
        raise Forbidden('This gateway keeps no ledger (ledger_url = "off").')
    dimension = dimension_of(request.query.get("by", "worker"))
    since_s = since_seconds(request.query.get("since", "24h"))
    since_hour = int((time.time() - since_s) // HOUR_S) * HOUR_S
    await ledger.writer.settled()  # every answer given so far is in the report
    rows = await ledger.store.usage(dimension, since_hour)
    return web.json_response(
        {
            "by": dimension,
            "since": since_hour,
            "rows": [r.to_json() for r in rows],
            "total": total(rows).to_json(),
        }
    )


def render_table(report: dict[str, Any]) -> str:
    rows = [*report["rows"], report["total"]]
    head = [report["by"].upper(), "REQUESTS", "ERRORS", "PROMPT", "CACHED", "COMPLETION", "TOTAL", "GPU-S"]
    cells = [head] + [[str(r[f]) for f in FIELDS] + [f"{r['gpu_seconds']:.1f}"] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    return "\n".join(
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        for row in cells
    )


def render_csv(report: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([report["by"], *FIELDS[1:], "gpu_seconds"])
    for r in report["rows"]:
        writer.writerow([r[f] for f in FIELDS] + [r["gpu_seconds"]])
    return out.getvalue()


def run_usage_command(gateway: str, admin_key: str, *, by: str, since: str, output: str) -> int:
    """``infercdn usage``: the report from a gateway's admin endpoint, as a table, JSON or CSV."""
    query = urllib.parse.urlencode({"by": by, "since": since})
    report = admin_call(gateway, admin_key, f"/admin/v1/usage?{query}", "infercdn usage")
    if isinstance(report, int):
        return report
    if output == "json":
        print(json.dumps(report, indent=2))
    else:
        print(render_csv(report) if output == "csv" else render_table(report), end="" if output == "csv" else "\n")
    return 0
