"""deploy/compose.yaml run for real with podman-compose: its InferCDN services (the gateway and two
workers, built from the Dockerfiles) come up, the workers enroll, and the `openai` SDK gets answers.
Its Prometheus and Grafana services (the "monitoring" profile) need images from Docker Hub, which
is not reachable here: they are checked statically (test_containers.py, test_monitoring_files.py)."""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.podman import BASE_IMAGE, BUILD_ARGS, ROOT, Container, environment
from bench.servers import free_port
from tests.conftest import MODEL
from tests.deploy.podman_fleet import Fleet, Secrets, answered_by

pytestmark = pytest.mark.containers

COMPOSE = ROOT / "deploy" / "compose.yaml"
WORKERS = ("worker-1", "worker-2")


# Building may compile llama.cpp (a cold cache); starting takes seconds, but podman-compose waits
# without end for a container that never starts ("podman wait --condition=running"), so that step
# is given minutes, not the build's half hour.
BUILD_TIMEOUT_S = 1800
START_TIMEOUT_S = 300


def compose(project: str, env_file: Path, *args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    command = [
        str(Path(sys.executable).parent / "podman-compose"),
        "-f", str(COMPOSE), "-p", project, "--env-file", str(env_file),
        "--podman-build-args", " ".join(BUILD_ARGS[:-2]),  # the base comes from the env file
        *args,
    ]  # fmt: skip
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=environment(), cwd=ROOT)
    except subprocess.TimeoutExpired as stuck:  # what podman said before it stuck is the diagnosis
        said = [
            (out.decode(errors="replace") if isinstance(out, bytes) else out)[-3000:]
            for out in (stuck.stdout, stuck.stderr)
            if out
        ]
        raise AssertionError(f"podman-compose {' '.join(args)} ran past {timeout_s:g} s:\n" + "\n".join(said)) from None
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def compose_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    project = f"infercdn-c{secrets.token_hex(3)}"
    keys = Secrets.made()
    port = free_port()
    env_file = tmp_path_factory.mktemp("compose") / ".env"
    env_file.touch(mode=0o600)
    env_file.write_text(
        f"INFERCDN_JOIN_TOKEN={keys.join_token}\nINFERCDN_API_KEY={keys.api_key}\n"
        f"INFERCDN_ADMIN_KEY={keys.admin_key}\nINFERCDN_PORT={port}\nINFERCDN_BASE_IMAGE={BASE_IMAGE}\n"
    )
    try:
        compose(project, env_file, "build", timeout_s=BUILD_TIMEOUT_S)
        compose(project, env_file, "up", "-d", timeout_s=START_TIMEOUT_S)
        containers = {name: Container(f"{project}_{name}_1") for name in ("gateway", *WORKERS)}
        fleet = Fleet(containers["gateway"], {w: containers[w] for w in WORKERS}, keys, f"http://127.0.0.1:{port}")
        try:
            fleet.wait_healthy(*WORKERS)
        except TimeoutError as error:
            raise TimeoutError(f"{error}\n" + "\n".join(c.logs() for c in containers.values())) from None
        yield fleet
    finally:
        compose(project, env_file, "down", "-v", "-t", "5", timeout_s=START_TIMEOUT_S)


async def test_the_compose_fleet_answers_the_openai_sdk(compose_fleet: Fleet) -> None:
    client = compose_fleet.client()
    assert MODEL in [m.id for m in (await client.models.list()).data]
    served = {await answered_by(client, stream=i % 2 == 0) for i in range(6)}
    assert served and served <= set(WORKERS)


def test_only_the_monitoring_profile_is_left_out(compose_fleet: Fleet) -> None:
    """The fleet's services run; Prometheus and Grafana (their images cannot be pulled here) do not."""
    running = set(
        subprocess.run(
            ["podman", "ps", "--format", "{{.Names}}"], capture_output=True, text=True, env=environment(), check=True
        ).stdout.split()
    )
    project = compose_fleet.gateway.name.removesuffix("_gateway_1")
    assert {f"{project}_{s}_1" for s in ("gateway", *WORKERS)} <= running
    assert not any(name.startswith(project) and ("prometheus" in name or "grafana" in name) for name in running)
