"""OpenAI response bodies and SSE chunks, built from generation events."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from edge_worker.runtimes.llama_cpp.events import Finished
from routing.openai_requests import GenerationRequest
from routing.wire import USAGE_COMMENT

DONE = b"data: [DONE]\n\n"


def sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def usage(finished: Finished) -> dict[str, Any]:
    return {
        "prompt_tokens": finished.prompt_tokens,
        "completion_tokens": finished.completion_tokens,
        "total_tokens": finished.prompt_tokens + finished.completion_tokens,
        # As OpenAI reports prompt caching: the part of the prompt read from the KV cache.
        "prompt_tokens_details": {"cached_tokens": finished.cached_tokens},
    }


class ResponseShaper:
    """Builds the bodies of one response; ids and timestamps stay fixed across chunks."""

    def __init__(self, request: GenerationRequest, model: str):
        self._chat = request.is_chat
        self._include_usage = request.include_usage
        self.id = ("chatcmpl-" if self._chat else "cmpl-") + uuid.uuid4().hex
        self._created = int(time.time())
        self._model = model

    def _envelope(self, obj: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": self.id, "object": obj, "created": self._created, "model": self._model, "choices": choices}

    def complete(self, text: str, finished: Finished) -> dict[str, Any]:
        if self._chat:
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finished.reason,
            }
            body = self._envelope("chat.completion", [choice])
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finished.reason}
            body = self._envelope("text_completion", [choice])
        body["usage"] = usage(finished)
        return body

    def _chunk(self, delta_or_text: dict[str, Any] | str, finish_reason: str | None) -> bytes:
        if self._chat:
            choice = {"index": 0, "delta": delta_or_text, "logprobs": None, "finish_reason": finish_reason}
            body = self._envelope("chat.completion.chunk", [choice])
        else:
            choice = {"index": 0, "text": delta_or_text, "logprobs": None, "finish_reason": finish_reason}
            body = self._envelope("text_completion", [choice])
        if self._include_usage:
            body["usage"] = None
        return sse(body)

    def first_chunk(self) -> bytes | None:
        """Chat streams open with the assistant role, as OpenAI's do."""
        return self._chunk({"role": "assistant", "content": ""}, None) if self._chat else None

    def delta_chunk(self, text: str) -> bytes:
        return self._chunk({"content": text} if self._chat else text, None)

    def final_chunks(self, finished: Finished) -> bytes:
        out = self._chunk({} if self._chat else "", finished.reason)
        if self._include_usage:
            body = self._envelope("chat.completion.chunk" if self._chat else "text_completion", [])
            body["usage"] = usage(finished)
            out += sse(body)
        else:
            # An SSE comment (clients skip it) so the gateway can count tokens without include_usage.
            out += USAGE_COMMENT + json.dumps(usage(finished), separators=(",", ":")).encode() + b"\n\n"
        return out + DONE
