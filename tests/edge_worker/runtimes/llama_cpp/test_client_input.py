"""Requests that used to crash the real llama.cpp worker are answered (or refused with a 400), never a 5xx.

A 5xx would count against a healthy worker at the gateway, so one client
could take workers out of the fleet by sending them.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from bench.servers import Server
from tests.conftest import MODEL


def post(url: str, path: str, raw: bytes) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url + path, data=raw, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_an_empty_prompt_is_answered(worker: Server) -> None:
    status, body = post(
        worker.url, "/v1/completions", json.dumps({"model": MODEL, "prompt": "", "max_tokens": 3}).encode()
    )
    assert status == 200, body
    assert body["usage"]["completion_tokens"] >= 1  # type: ignore[index]


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("/v1/chat/completions", b'{"model": "%s", "messages": [{"role": "user", "content": "a\\ud800b"}]}'),
        ("/v1/completions", b'{"model": "%s", "prompt": "\\udfff", "max_tokens": 2}'),
        ("/v1/completions", b'{"model": "%s", "prompt": "x", "stop": ["\\ud800"], "max_tokens": 2}'),
        ("/v1/completions", b'{"model": "%s", "prompt": "x", "temperature": 1' + b"0" * 400 + b"}"),
    ],
)
def test_bad_strings_and_numbers_are_400_at_the_worker_and_the_gateway(
    worker: Server, gateway: Server, path: str, raw: bytes
) -> None:
    body = raw.replace(b"%s", MODEL.encode())
    for server in (worker, gateway):
        status, answer = post(server.url, path, body)
        assert status == 400, answer
        assert answer["error"]["type"] == "invalid_request_error"  # type: ignore[index]


def test_a_clients_bad_requests_never_take_the_worker_out(worker: Server, gateway: Server) -> None:
    bad = b'{"model": "%s", "prompt": "\\ud800"}' % MODEL.encode()
    for _ in range(5):
        assert post(gateway.url, "/v1/completions", bad)[0] == 400
    status, body = post(
        gateway.url, "/v1/completions", json.dumps({"model": MODEL, "prompt": "Hi", "max_tokens": 1}).encode()
    )
    assert status == 200, body
