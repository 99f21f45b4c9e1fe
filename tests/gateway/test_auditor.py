"""The audit contract the gateway checks itself, before any verifier: what in a worker's record or answer
contradicts what the client got (the real paths run in test_audits.py)."""

from __future__ import annotations

from dataclasses import replace

from gateway.auditor import Sample, _disagreement
from routing.audit_record import AuditRecord, ChoiceIds
from routing.fleet import ModelOffer
from routing.openai_requests import parse_chat_request
from routing.quantization import from_label
from routing.usage import Usage
from routing.verification import MAX_TEXT_CHARS, DeliveredCall

EOS = 2
WEATHER = {"type": "function", "function": {"name": "weather"}}
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": [WEATHER], "max_tokens": 8}
OFFER = ModelOffer("m", from_label("Q4_1"), 2048, "llama.cpp", sha256="ab" * 32)
RECORD = AuditRecord("req", "w", "m", (1, 2, 3), (ChoiceIds((5, 6), EOS),))


def sample(**changes: object) -> Sample:
    base = Sample(
        worker_id="w",
        offer=OFFER,
        body=BODY,
        request=parse_chat_request(BODY),
        request_id="req",
        sealed=None,
        text="",
        calls=(DeliveredCall("weather", "{}"),),
        finish_reason="tool_calls",
        usage=Usage(prompt_tokens=3, completion_tokens=2),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_an_answer_that_agrees_with_its_record_passes() -> None:
    assert _disagreement(RECORD, sample()) == ""
    assert _disagreement(RECORD, sample(calls=(), text="Sunny.", finish_reason="stop")) == ""


def test_vllm_counts_the_end_token_among_the_completion_tokens_and_llama_cpp_does_not() -> None:
    vllm = replace(OFFER, runtime="vllm")
    assert _disagreement(RECORD, sample(offer=vllm, usage=Usage(prompt_tokens=3, completion_tokens=3))) == ""
    assert "completion_tokens" in _disagreement(RECORD, sample(usage=Usage(prompt_tokens=3, completion_tokens=3)))


def test_a_call_to_a_function_never_offered_or_an_answer_too_long_to_check_is_flagged_not_let_through() -> None:
    """Either would make a verifier refuse the check: the answer would go unaudited, so it is flagged here."""
    assert "did not offer" in _disagreement(RECORD, sample(calls=(DeliveredCall("rm_rf", "{}"),)))
    huge = "x" * (MAX_TEXT_CHARS + 1)
    assert "longer" in _disagreement(RECORD, sample(calls=(DeliveredCall("weather", huge),)))
    assert "longer" in _disagreement(RECORD, sample(calls=(), text=huge, finish_reason="stop"))
    assert "neither an end token" in _disagreement(replace(RECORD, choices=(ChoiceIds((5, 6)),)), sample())
