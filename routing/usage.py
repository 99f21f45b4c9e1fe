"""Token counts from upstream answers, without re-encoding them.

Non-streaming answers carry ``usage``. A stream carries it in its last
chunk when the client asked for ``include_usage``, and otherwise (from an
InferCDN worker) in an SSE comment before ``[DONE]``. Chunks are only
scanned for the word "usage", so the relay stays a byte copy.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass

from routing.wire import USAGE_COMMENT

_USAGE_OBJECT = re.compile(rb'"usage":\s*\{')


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def read(self, obj: object) -> bool:
        if not isinstance(obj, dict) or not isinstance(obj.get("usage"), dict):
            return False
        usage = obj["usage"]
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if isinstance(prompt, int) and isinstance(completion, int):
            self.prompt_tokens, self.completion_tokens = prompt, completion
            return True
        return False

    def from_body(self, payload: bytes) -> None:
        if b'"usage"' in payload:
            with contextlib.suppress(ValueError):
                self.read(json.loads(payload))

    def from_stream_chunk(self, chunk: bytes) -> bool:
        """Read usage from a chunk if it carries any; True when it did."""
        if b"usage" not in chunk:
            return False
        found = False
        for line in chunk.split(b"\n"):
            if line.startswith(USAGE_COMMENT):
                text = line[len(USAGE_COMMENT) :]
            elif line.startswith(b"data: {") and _USAGE_OBJECT.search(line):
                text = line[len(b"data: ") :]  # only the chunk with counts: "usage": null is skipped unparsed
            else:
                continue
            try:
                obj = json.loads(text)
            except ValueError:
                continue
            found = self.read(obj if line.startswith(b"data: ") else {"usage": obj}) or found
        return found
