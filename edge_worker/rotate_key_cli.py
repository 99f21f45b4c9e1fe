"""``infercdn worker rotate-key``: give this worker a new key, handed over by the old one.

Run it while the worker runs or is stopped; the worker uses the new key from
its next start. At its first registration after that, each gateway moves the
worker's id to the new key (the old key signed the handover) and refuses the
old key from then on; the worker's id and its approval stay. The old private
key is not kept anywhere.
"""

from __future__ import annotations

import argparse
import sys

from edge_worker.key_files import add_key_file_arguments, key_path_of
from routing.identity import KeyFileError
from routing.key_handover import handover_path, rotate
from routing.settings import ConfigError


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_key_file_arguments(p)
    return p


def main(argv: list[str], prog: str = "infercdn worker rotate-key") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        path = key_path_of(args)
        old, new = rotate(path)
    except ConfigError as exc:
        print(f"{prog}: invalid config: {exc}", file=sys.stderr)
        return 2
    except (KeyFileError, OSError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    print(f"key {old.fingerprint} handed over to {new.fingerprint} ({path}; handover in {handover_path(path)})")
    print("restart the worker to use it: each gateway moves its id to the new key at its next registration")
    return 0
