"""End-to-end checks of a gateway in front of a vLLM worker, with the official openai client.

    python -m bench.vllm_check --gateway http://127.0.0.1:8080 --model NAME

The same behaviours tests/gateway/test_openai_client.py checks on the bundled
llama.cpp model, for any model: listing, completions, chat, streaming with and
without include_usage, stop sequences, a bad request's error shape. Prints one
line per check and exits non-zero if any fails. Used by bench/gpu_check.sh.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import openai


def checks(client: openai.OpenAI, model: str) -> list[tuple[str, Callable[[], None]]]:
    def listed() -> None:
        ids = [m.id for m in client.models.list().data]
        assert model in ids, ids

    def completion() -> None:
        reply = client.completions.create(model=model, prompt="The capital of France is", max_tokens=8, temperature=0)
        assert reply.choices[0].text.strip() and reply.usage and reply.usage.completion_tokens > 0

    def chat() -> None:
        reply = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Say hello"}], max_tokens=16, temperature=0
        )
        assert reply.choices[0].message.content

    def stream() -> None:
        chunks = list(
            client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "Count to five"}], max_tokens=24, stream=True
            )
        )
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert not any(c.usage for c in chunks)  # not asked for

    def stream_usage() -> None:
        chunks = list(
            client.completions.create(
                model=model, prompt="1, 2, 3,", max_tokens=8, stream=True, stream_options={"include_usage": True}
            )
        )
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0

    def stop() -> None:
        reply = client.completions.create(model=model, prompt="1, 2, 3, 4,", max_tokens=32, temperature=0, stop=["7"])
        assert "7" not in reply.choices[0].text

    def bad_request() -> None:
        try:
            client.chat.completions.create(model=model, messages=[], max_tokens=4)
        except openai.BadRequestError as exc:
            assert exc.status_code == 400
        else:
            raise AssertionError("an empty messages list was accepted")

    return [
        ("models list", listed),
        ("completion", completion),
        ("chat", chat),
        ("stream", stream),
        ("stream with usage", stream_usage),
        ("stop sequence", stop),
        ("bad request is a 400", bad_request),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--api-key", default="unused")
    args = parser.parse_args()
    client = openai.OpenAI(base_url=args.gateway.rstrip("/") + "/v1", api_key=args.api_key, max_retries=0, timeout=120)
    failed = 0
    for name, check in checks(client, args.model):
        try:
            check()
            print(f"ok    {name}")
        except Exception as exc:  # a report, not a crash: every check runs
            failed += 1
            print(f"FAIL  {name}: {type(exc).__name__}: {exc}")
    print(f"{failed} failed" if failed else "all passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
