"""``infercdn up``, the README's first command, end to end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import openai

from bench.servers import free_port
from tests.conftest import MODEL


def test_up_serves_openai_requests_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "up", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "XDG_STATE_HOME": str(tmp_path)},  # its keys and enrollments, not the user's
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            assert line, "infercdn up exited early:\n" + "".join(lines)
            lines.append(line)
            if "Press Ctrl-C to stop" in line:
                break
        output = "".join(lines)
        assert f"http://127.0.0.1:{port}/v1" in output
        assert "loading model 1/1" in output  # loading progress is shown
        assert f'"model": "{MODEL}"' in output  # a ready-to-paste example
        assert "No API keys are configured" in output  # open, and it says so

        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
        reply = client.completions.create(model=MODEL, prompt="The capital of France is", temperature=0, max_tokens=2)
        assert "Paris" in reply.choices[0].text

        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    rest = process.stdout.read()
    assert "Traceback" not in "".join(lines) + rest
    # The local worker's own key and the gateway's enrollments, kept for the next run, readable by this user only.
    for name in ("up-worker.key", "gateway.sqlite3"):
        assert (tmp_path / "infercdn" / name).stat().st_mode & 0o777 == 0o600
