"""``infercdn fleet``: the live fleet and worker enrollments, through a gateway's admin endpoints.

``infercdn fleet`` prints the live fleet; ``fleet enrollments`` every
enrolled key, ``fleet pending`` those waiting for approval; ``fleet approve
ID``, ``fleet revoke ID`` and ``fleet forget ID`` change one. ``fleet
audits`` shows what audits found; ``fleet pardon ID`` clears a conviction.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

COLUMNS = (
    ("WORKER", "id"),
    ("REGION", "region"),
    ("RUNTIME", "runtime"),
    ("HARDWARE", "hardware"),
    ("MODELS", "models"),
    ("HEALTH", "health"),
    ("VIA", "via"),
    ("TRUST", "trust"),
    ("SLO 1h", "slo_1h"),
    ("RTT ms", "rtt_ms"),
    ("IN-FLIGHT/QUEUED", "load"),
    ("HEARTBEAT", "last_heartbeat_s"),
)


ENROLLMENT_ACTIONS = {"approve": ("POST", "/approve"), "revoke": ("POST", "/revoke"), "forget": ("DELETE", "")}
WORKER_ACTIONS = {"pardon": ("POST", "/pardon")}


def call_admin(gateway: str, admin_key: str, path: str, method: str = "GET") -> dict[str, Any]:
    request = urllib.request.Request(gateway.rstrip("/") + path, method=method)
    if admin_key:
        request.add_header("Authorization", f"Bearer {admin_key}")
    with urllib.request.urlopen(request, timeout=10) as resp:
        body = resp.read()
        data: dict[str, Any] = json.loads(body) if body else {}
        return data


def admin_call(gateway: str, admin_key: str, path: str, command: str, method: str = "GET") -> dict[str, Any] | int:
    """The admin endpoint's JSON, or the exit status after saying on stderr why there is none."""
    try:
        return call_admin(gateway, admin_key, path, method)
    except urllib.error.HTTPError as exc:
        try:
            message = json.load(exc)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = exc.reason
        print(f"{command}: {gateway} answered {exc.code}: {message}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"{command}: cannot reach {gateway}: {exc}", file=sys.stderr)
        return 1


def render_enrollments(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'WORKER':<40}  {'STATE':<8}  {'KEY':<16}  SOURCE"]
    lines += [f"{r['worker_id']:<40}  {r['state']:<8}  {r['fingerprint']:<16}  {r['source']}" for r in rows]
    lines.append(f"{len(rows)} enrollment(s)")
    return "\n".join(lines)


def render_gaps(gaps: dict[str, Any]) -> str:
    if not gaps["enabled"]:
        return "audits are off on this gateway (no verifiers configured)"
    lines = [f"{'MODEL':<32}  {'WORKER':<40}  {'CHECKS':>6}  {'P50':>6}  {'P99':>6}  {'LARGEST':>7}"]
    for m in gaps["models"]:
        for w in m["workers"]:
            figures = f"{w['checks']:>6}  {w['p50']:>6.2f}  {w['p99']:>6.2f}  {w['largest']:>7.2f}"
            lines.append(f"{m['model']:<32}  {w['worker_id']:<40}  {figures}")
    if not gaps["models"]:
        lines.append("no greedy answer audited yet")
    for m in gaps["models"]:
        lines.append(
            f"{m['model']}: honest gaps suggest audit_gap_nats = {m['suggested_gap_nats']:g} "
            f"(now {gaps['audit_gap_nats']:g}; the largest gap seen, with half again as margin)"
        )
    return "\n".join(lines)


def render_audits(audits: dict[str, Any]) -> str:
    if not audits["enabled"]:
        return "audits are off on this gateway (no verifiers configured)"
    # GREEDY: greedy checks among the worker's last audits (canaries top up those below 10).
    head = f"{'WORKER':<40}  {'STANDING':<10}  {'CHECKS':>6}  {'GREEDY':>6}  {'FLAGS':>5}  {'Z':>6}  LAST FLAG"
    lines = [head]
    for r in audits["workers"]:
        z = "-" if r["running_z"] is None else f"{r['running_z']:.2f}"
        reason = r["last_reason"] or "-"
        counts = f"{r['checks']:>6}  {r['recent_greedy_checks']:>6}  {r['flags']:>5}"
        lines.append(f"{r['worker_id']:<40}  {r['standing']:<10}  {counts}  {z:>6}  {reason}")
    lines.append(f"{len(audits['workers'])} audited worker(s)")
    return "\n".join(lines)


def slo_cell(report: dict[str, Any], weight: float, below_floor: list[str]) -> str:
    """e.g. "up 99.9% ok 100% p99 0.41s": what the last hour shows, the routing weight when it is cut,
    and the models whose floor (model_slos) it misses."""
    parts = []
    if report.get("availability") is not None:
        parts.append(f"up {report['availability']:.1%}")
    if report.get("success_ratio") is not None:
        parts.append(f"ok {report['success_ratio']:.1%}")
    if report.get("ttft_p99_s") is not None:
        parts.append(f"p99 {report['ttft_p99_s']:.2f}s")
    if weight < 1:
        parts.append(f"weight {weight:.2f}")
    if below_floor:
        parts.append(f"below floor: {', '.join(below_floor)}")
    return " ".join(parts) or "-"


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
            "slo_1h": slo_cell(w.get("slo", {}).get("1h", {}), w.get("slo_weight", 1.0), w.get("below_slo_floor", [])),
        }
        rows.append([str(cells[key]) for _, key in COLUMNS])
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.append(f"{len(fleet['workers'])} worker(s)")
    return "\n".join(lines)


def run_fleet_command(
    gateway: str, admin_key: str, *, as_json: bool, action: str | None = None, worker_id: str = ""
) -> int:
    command = "infercdn fleet"
    if action in ENROLLMENT_ACTIONS or action in WORKER_ACTIONS:
        method, suffix = ENROLLMENT_ACTIONS.get(action or "") or WORKER_ACTIONS[action or ""]
        kind = "enrollments" if action in ENROLLMENT_ACTIONS else "workers"
        path = f"/admin/v1/{kind}/{quote(worker_id, safe='')}{suffix}"
        if isinstance(code := admin_call(gateway, admin_key, path, command, method), int):
            return code
        print(f"worker {worker_id}: {action} done")
        return 0
    paths = {
        "audits": "/admin/v1/audits",
        "calibrate": "/admin/v1/audits/gaps",
        "enrollments": "/admin/v1/enrollments",
        "pending": "/admin/v1/enrollments",
    }
    answer = admin_call(gateway, admin_key, paths.get(action or "", "/admin/v1/fleet"), command)
    if isinstance(answer, int):
        return answer
    if action == "audits":
        print(json.dumps(answer, indent=2) if as_json else render_audits(answer))
    elif action == "calibrate":
        print(json.dumps(answer, indent=2) if as_json else render_gaps(answer))
    elif action in ("enrollments", "pending"):
        rows = [r for r in answer["enrollments"] if action == "enrollments" or r["state"] == "pending"]
        print(json.dumps(rows, indent=2) if as_json else render_enrollments(rows))
    else:
        print(json.dumps(answer, indent=2) if as_json else render(answer))
    return 0
