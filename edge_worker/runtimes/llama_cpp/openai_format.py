"""OpenAI response bodies and SSE chunks, built from each choice's output."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from edge_worker.runtimes.llama_cpp.choice_output import ChoiceOutput, Piece
from edge_worker.runtimes.llama_cpp.events import Finished
from edge_worker.runtimes.llama_cpp.logprobs import Alternative, TokenLogprob
from routing.openai_requests import GenerationRequest
from routing.wire import USAGE_COMMENT

DONE = b"data: [DONE]\n\n"


def sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


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
        self._logprobs = request.logprobs
        self.id = ("chatcmpl-" if self._chat else "cmpl-") + uuid.uuid4().hex
        self._created = int(time.time())
        self._model = model
        self._text_offsets: dict[int, int] = {}  # completions' logprobs: where each choice's next token starts

    def _envelope(self, obj: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": self.id, "object": obj, "created": self._created, "model": self._model, "choices": choices}

    @property
    def _object(self) -> str:
        return "chat.completion.chunk" if self._chat else "text_completion"

    def complete(self, outputs: list[ChoiceOutput], reasons: list[str], total: Finished) -> dict[str, Any]:
        choices = []
        for index, (output, reason) in enumerate(zip(outputs, reasons, strict=True)):
            logprobs = self._logprobs_json(index, output.logprobs) if self._logprobs and not output.calls else None
            if self._chat:
                choices.append(
                    {"index": index, "message": output.message(), "logprobs": logprobs, "finish_reason": reason}
                )
            else:
                text = "".join(output.text)
                choices.append({"index": index, "text": text, "logprobs": logprobs, "finish_reason": reason})
        body = self._envelope("chat.completion" if self._chat else "text_completion", choices)
        body["usage"] = usage(total)
        return body

    def _chunk(self, index: int, piece: Piece | None, finish_reason: str | None) -> bytes:
        logprobs = self._logprobs_json(index, piece.logprobs) if self._logprobs and piece is not None else None
        if self._chat:
            delta = piece.delta if piece is not None else {}
            choice = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}
        else:
            text = piece.text if piece is not None else ""
            choice = {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}
        body = self._envelope(self._object, [choice])
        if self._include_usage:
            body["usage"] = None
        return sse(body)

    def opening(self, n: int) -> bytes:
        """Chat streams open with the assistant role, as OpenAI's do (once per choice)."""
        if not self._chat:
            return b""
        return b"".join(self._chunk(i, Piece({"role": "assistant", "content": ""}), None) for i in range(n))

    def piece_chunk(self, index: int, piece: Piece) -> bytes:
        return self._chunk(index, piece, None)

    def finish_chunk(self, index: int, reason: str) -> bytes:
        return self._chunk(index, None, reason)

    def closing(self, total: Finished) -> bytes:
        if self._include_usage:
            body = self._envelope(self._object, [])
            body["usage"] = usage(total)
            out = sse(body)
        else:
            # An SSE comment (the gateway drops it) so the gateway can count tokens without include_usage.
            out = USAGE_COMMENT + json.dumps(usage(total), separators=(",", ":")).encode() + b"\n\n"
        return out + DONE

    def _logprobs_json(self, index: int, tokens: list[TokenLogprob]) -> dict[str, Any]:
        if self._chat:
            content = [
                {**_alternative_json(t.chosen), "top_logprobs": [_alternative_json(a) for a in t.top]} for t in tokens
            ]
            return {"content": content, "refusal": None}
        offset = self._text_offsets.get(index, 0)
        offsets = []
        for t in tokens:
            offsets.append(offset)
            offset += len(t.chosen.text)
        self._text_offsets[index] = offset
        return {
            "tokens": [t.chosen.text for t in tokens],
            "token_logprobs": [t.chosen.logprob for t in tokens],
            "top_logprobs": [{a.text: a.logprob for a in t.top} for t in tokens],
            "text_offset": offsets,
        }


def _alternative_json(a: Alternative) -> dict[str, Any]:
    return {"token": a.text, "logprob": a.logprob, "bytes": list(a.raw)}
