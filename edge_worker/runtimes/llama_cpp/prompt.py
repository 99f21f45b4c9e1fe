"""A request's prompt as the model reads it: the chat template rendered, then tokenized.

Workers and verifiers render the same way, so a verifier can tell whether the
prompt ids a worker reports are the ones the client's request makes.
"""

from __future__ import annotations

from typing import Any

from edge_worker.runtimes.llama_cpp.tool_calls import template_messages, template_takes_tools, template_tools
from routing.errors import InferCDNError, InvalidRequest
from routing.openai_requests import GenerationRequest


class PromptRenderer:
    def __init__(self, llm: Any, chat_template: str | None):
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self._llm = llm
        self.native_tools = template_takes_tools(chat_template)
        self._formatter = None
        if chat_template:
            eos = llm.token_eos()
            self._formatter = Jinja2ChatFormatter(
                template=chat_template,
                eos_token=llm._model.token_get_text(eos),
                bos_token=llm._model.token_get_text(llm.token_bos()),
                stop_token_ids=[eos],
            )

    def render(self, request: GenerationRequest, model: str) -> list[int]:
        """The prompt's token ids (blocking, but it may run beside a generation: it reads only the vocabulary)."""
        if request.messages is not None:
            if self._formatter is None:
                raise InferCDNError(f"The model '{model}' has no chat template; use /v1/completions.")
            messages: Any = template_messages(request, self.native_tools)
            tools: Any = template_tools(request) if self.native_tools else None
            try:
                formatted = self._formatter(messages=messages, tools=tools)
            except Exception as exc:  # the template's own raise_exception, or a Jinja error on odd input
                raise InvalidRequest(f"The model's chat template refused these messages: {exc}") from None
            tokens: list[int] = self._llm.tokenize(
                formatted.prompt.encode(), add_bos=not formatted.added_special, special=True
            )
            return tokens
        tokens = list(self._llm.tokenize((request.prompt or "").encode(), add_bos=True, special=False))
        if not tokens:
            # An empty prompt (OpenAI allows it) starts from BOS; llama.cpp cannot sample from nothing.
            bos = self._llm.token_bos()
            if bos < 0:
                raise InvalidRequest("'prompt' must not be empty for this model.", param="prompt")
            tokens = [bos]
        return tokens
