"""``infercdn worker receipts``: what this worker served, by the gateways' own signed word.

Every kept receipt's signature is checked again (against the key of the
gateway that sent it, or ``--gateway-key`` if given: the key a gateway
publishes at ``/v1/infercdn/keys``), then the totals are printed per gateway
and model. A failed check is reported and makes the exit status 1.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from collections import defaultdict
from dataclasses import dataclass

from edge_worker.key_files import add_key_file_arguments, key_path_of
from edge_worker.receipt_book import book_path, kept_since
from routing.access_tokens import public_key_from_text
from routing.errors import InvalidRequest
from routing.receipt import signed_by, unseal
from routing.settings import ConfigError
from routing.spans import span_seconds


@dataclass
class Totals:
    receipts: int = 0
    served: int = 0  # receipts for answers delivered (status < 500)
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    gpu_seconds: float = 0.0


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_key_file_arguments(p)  # its receipts are kept beside its key file
    p.add_argument("--since", default="7d", help="how far back, e.g. 24h or 7d (default 7d)")
    p.add_argument("--gateway-key", help="check every receipt against this public key instead of the stored ones")
    p.add_argument("--json", action="store_true", help="print JSON")
    return p


def main(argv: list[str], prog: str = "infercdn worker receipts") -> int:
    args = build_parser(prog).parse_args(argv)
    span = span_seconds(args.since)
    if span is None:
        print(f"{prog}: --since is a span like 24h or 7d", file=sys.stderr)
        return 2
    try:
        path = book_path(key_path_of(args))
    except ConfigError as exc:
        print(f"{prog}: invalid config: {exc}", file=sys.stderr)
        return 2
    if not path.exists():
        print(f"{prog}: no receipts kept at {path}", file=sys.stderr)
        return 1
    only_key = public_key_from_text(args.gateway_key) if args.gateway_key else None
    if args.gateway_key and only_key is None:
        print(f"{prog}: --gateway-key is not an Ed25519 public key", file=sys.stderr)
        return 2
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        kept = kept_since(db, time.time() - span)
    finally:
        db.close()
    totals: dict[tuple[str, str], Totals] = defaultdict(Totals)
    invalid = 0
    for k in kept:
        key = only_key or public_key_from_text(k.gateway_key)
        try:
            sealed = unseal(k.sealed)
        except InvalidRequest:
            invalid += 1
            continue
        if key is None or not signed_by(sealed, key):
            invalid += 1
            continue
        r, t = sealed.receipt, totals[(k.gateway_key, sealed.receipt.model)]
        t.receipts += 1
        t.served += r.served
        t.prompt_tokens += r.prompt_tokens
        t.cached_tokens += r.cached_tokens
        t.completion_tokens += r.completion_tokens
        t.gpu_seconds += r.gpu_seconds
    _print(totals, invalid, len(kept), as_json=args.json)
    return 1 if invalid else 0


def _print(totals: dict[tuple[str, str], Totals], invalid: int, checked: int, *, as_json: bool) -> None:
    rows = [{"gateway_key": g, "model": m, **vars(t)} for (g, m), t in sorted(totals.items())]
    if as_json:
        print(json.dumps({"checked": checked, "invalid": invalid, "totals": rows}, indent=2))
        return
    print(f"{'GATEWAY':<14}  {'MODEL':<28}  {'RECEIPTS':>8}  {'PROMPT':>9}  {'CACHED':>9}  {'COMPLETION':>10}  GPU-S")
    for r in rows:
        print(
            f"{str(r['gateway_key'])[:12] + '…':<14}  {r['model']:<28}  {r['receipts']:>8}  {r['prompt_tokens']:>9}  "
            f"{r['cached_tokens']:>9}  {r['completion_tokens']:>10}  {r['gpu_seconds']:.1f}"
        )
    verdict = "every signature checks" if not invalid else f"{invalid} FAILED their signature check"
    print(f"{checked} receipt(s); {verdict}")
