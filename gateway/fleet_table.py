"""``infercdn fleet``: the live fleet from a gateway's admin endpoint, as a table."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from typing import Any

COLUMNS = (
    ("WORKER", "id"),
    ("REGION", "region"),
    ("RUNTIME", "runtime"),
    ("HARDWARE", "hardware"),
    ("MODELS", "models"),
    ("HEALTH", "health"),
    ("RTT ms", "rtt_ms"),
    ("IN-FLIGHT/QUEUED", "load"),
    ("HEARTBEAT", "last_heartbeat_s"),
)


def fetch_fleet(gateway: str, admin_key: str) -> dict[str, Any]:
    request = urllib.request.Request(gateway.rstrip("/") + "/admin/v1/fleet")
    if admin_key:
        request.add_header("Authorization", f"Bearer {admin_key}")
    with urllib.request.urlopen(request, timeout=10) as resp:
        data: dict[str, Any] = json.load(resp)
        return data


def render(fleet: dict[str, Any]) -> str:
    rows = [[title for title, _ in COLUMNS]]
    for w in fleet["workers"]:
        cells = {
            **w,
            "models": ", ".join(w["models"]) or "-",
            "rtt_ms": "-" if w["rtt_ms"] is None else f"{w['rtt_ms']:.1f}",
            "load": f"{w['in_flight']}/{w['queued']}",
            "last_heartbeat_s": "-" if w["last_heartbeat_s"] is None else f"{w['last_heartbeat_s']:.1f}s ago",
            "region": w["region"] or "-",
            "hardware": w["hardware"] or "-",
            "runtime": w["runtime"] or "-",
        }
        rows.append([str(cells[key]) for _, key in COLUMNS])
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.append(f"{len(fleet['workers'])} worker(s)")
    return "\n".join(lines)


def run_fleet_command(gateway: str, admin_key: str, *, as_json: bool) -> int:
    try:
        fleet = fetch_fleet(gateway, admin_key)
    except urllib.error.HTTPError as exc:
        try:
            message = json.load(exc)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = exc.reason
        print(f"infercdn fleet: {gateway} answered {exc.code}: {message}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"infercdn fleet: cannot reach {gateway}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(fleet, indent=2) if as_json else render(fleet))
    return 0
