"""Token counts from upstream answers.

Non-streaming answers carry ``usage``. A stream carries it in its last data
event when the client asked for ``include_usage``, and otherwise (from an
InferCDN worker) in an SSE comment before ``[DONE]``. Streams are read as
whole events (``routing.sse``), so a usage event split across two network
reads is still counted. Counts come from workers, so they are clamped: a
negative count is 0, and nothing is larger than ``MAX_REPORTED_TOKENS`` or
than what the request could have used (``max_prompt``: its body's bytes and a
template's tokens; ``max_completion``: max_tokens for each choice); a claim
past those is cut to them and noted (``overclaimed``), so that a worker can
neither bill for nor lock a client out with tokens it did not serve.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from routing.json_limits import loads_bounded
from routing.sse import SseEvent

# More than any context window; a worker's larger claim is a lie, not a count.
MAX_REPORTED_TOKENS = 10_000_000


# Tokens a chat template may add around a prompt's text (roles, separators, a system preamble).
TEMPLATE_TOKENS = 512
# The most tokens one image may become (a URL is a few bytes of the body; its image is many tokens).
IMAGE_TOKENS = 16_384


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # of the prompt, read from the worker's cache (never more than the prompt)
    max_prompt: int = MAX_REPORTED_TOKENS  # the most the request could have used: set by the gateway
    max_completion: int = MAX_REPORTED_TOKENS
    overclaimed: bool = False  # a count was past those bounds (and cut to them)

    def bound(self, request_bytes: int, max_completion: int | None, *, images: int = 0) -> None:
        """What this request could use at most: no token is smaller than a byte of its body, past a
        template's and its images' worth; no answer is longer than ``max_completion`` (max_tokens times the
        choices)."""
        self.max_prompt = min(request_bytes + TEMPLATE_TOKENS + images * IMAGE_TOKENS, MAX_REPORTED_TOKENS)
        if max_completion is not None:
            self.max_completion = min(max_completion, MAX_REPORTED_TOKENS)

    def read(self, obj: object) -> bool:
        """Take ``obj["usage"]`` if it has integer counts; True when it did."""
        if not isinstance(obj, dict) or not isinstance(obj.get("usage"), dict):
            return False
        usage = obj["usage"]
        # Embeddings' usage has no completion_tokens: nothing was generated.
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens", 0)
        if _count(prompt) and _count(completion):
            self.overclaimed = self.overclaimed or prompt > self.max_prompt or completion > self.max_completion
            self.prompt_tokens = min(max(prompt, 0), self.max_prompt)
            self.completion_tokens = min(max(completion, 0), self.max_completion)
            details = usage.get("prompt_tokens_details")
            cached = details.get("cached_tokens") if isinstance(details, dict) else None
            self.cached_tokens = min(max(cached, 0), self.prompt_tokens) if isinstance(cached, int) else 0
            return True
        return False

    def from_body(self, payload: bytes) -> None:
        if b'"usage"' in payload:
            with contextlib.suppress(ValueError):
                self.read(loads_bounded(payload))

    def from_event(self, event: SseEvent) -> bool:
        """Read usage from one stream event if it carries counts; True when it did."""
        if event.usage_comment is not None:
            return self.read({"usage": event.usage_comment})
        return event.data is not None and self.read(event.data)


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
