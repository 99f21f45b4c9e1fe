"""The images built from deploy/docker and run for real with podman: a gateway container and two
worker containers that enroll with it serve the `openai` SDK from the host, fail over when one
worker stops or is killed under load, and run as uid 10001. `make test-containers` runs these
(root, podman, minutes); `make test` leaves them out (marker `containers`)."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.podman import (
    DOCKER,
    GATEWAY_IMAGE,
    ROOT,
    WORKER_IMAGE,
    Container,
    Launch,
    PodmanError,
    build,
    podman,
    prune_replaced,
    wait_for,
)
from tests.conftest import MODEL
from tests.deploy.podman_fleet import GATEWAY_PORT, START_TIMEOUT_S, WORKER_PORT, Fleet, Secrets, answered_by

pytestmark = pytest.mark.containers

UID = 10001


@pytest.fixture(scope="session")
def images() -> Iterator[tuple[str, str]]:
    build(DOCKER / "gateway.Dockerfile", GATEWAY_IMAGE)
    build(DOCKER / "worker-cpu.Dockerfile", WORKER_IMAGE)
    yield GATEWAY_IMAGE, WORKER_IMAGE
    prune_replaced()


def worker_launch(name: str, worker_id: str, network: str, gateway_name: str, keys: Secrets) -> Launch:
    return Launch(
        WORKER_IMAGE,
        name,
        network,
        env={
            "INFERCDN_WORKER_GATEWAYS": f"http://{gateway_name}:{GATEWAY_PORT}",
            "INFERCDN_WORKER_ADVERTISE_URL": f"http://{name}:{WORKER_PORT}",
            "INFERCDN_WORKER_WORKER_ID": worker_id,
            "INFERCDN_WORKER_THREADS": "1",
        },
        secrets={"INFERCDN_WORKER_JOIN_TOKEN": keys.join_token},
        publish=[WORKER_PORT],
    )


@pytest.fixture(scope="module")
def fleet(images: tuple[str, str]) -> Iterator[Fleet]:
    prefix = f"infercdn-t{secrets.token_hex(3)}"
    network = f"{prefix}-net"
    keys = Secrets.made()
    started: list[Container] = []
    podman("network", "create", network)
    try:
        gateway_name = f"{prefix}-gateway"
        gateway = Launch(
            GATEWAY_IMAGE,
            gateway_name,
            network,
            secrets={
                "INFERCDN_GATEWAY_JOIN_TOKEN": keys.join_token,
                "INFERCDN_GATEWAY_API_KEY": keys.api_key,
                "INFERCDN_GATEWAY_ADMIN_KEY": keys.admin_key,
            },
            publish=[GATEWAY_PORT],
        ).start()
        started.append(gateway)
        workers = {}
        for worker_id in ("worker-1", "worker-2"):
            workers[worker_id] = worker_launch(f"{prefix}-{worker_id}", worker_id, network, gateway_name, keys).start()
            started.append(workers[worker_id])
        fleet = Fleet(gateway, workers, keys, f"http://127.0.0.1:{gateway.host_port(GATEWAY_PORT)}")
        try:
            fleet.wait_healthy(*workers)
        except TimeoutError as error:
            raise TimeoutError(f"{error}\n{fleet.rows()}\n" + "\n".join(c.logs() for c in started)) from None
        yield fleet
    finally:
        for container in started:
            container.remove()
        podman("network", "rm", "-f", network, check=False)


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return str(answer.read().decode())


async def test_the_openai_sdk_gets_answers_through_the_containers(fleet: Fleet) -> None:
    client = fleet.client()
    models = [m.id for m in (await client.models.list()).data]
    assert MODEL in models
    whole = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Name a colour."}], max_tokens=12, temperature=0
    )
    assert whole.choices[0].message.content and whole.usage and whole.usage.completion_tokens > 0
    pieces = []
    stream = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Count to five."}], max_tokens=12, stream=True
    )
    async for chunk in stream:
        pieces.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(pieces)


def test_each_container_serves_its_metrics(fleet: Fleet) -> None:
    gateway = get(f"{fleet.url}/metrics")
    assert "infercdn_gateway_requests_total" in gateway
    for worker_id in fleet.workers:
        assert f'worker="{worker_id}"' in gateway
    for container in fleet.workers.values():
        metrics = get(f"http://127.0.0.1:{container.host_port(WORKER_PORT)}/metrics")
        assert "infercdn_worker_" in metrics


def test_processes_run_as_uid_10001_and_the_healthchecks_pass(fleet: Fleet) -> None:
    for container in [fleet.gateway, *fleet.workers.values()]:
        assert container.process_uids() == {UID}, container.name
        assert container.healthcheck(), container.logs()


async def under_load(fleet: Fleet, during: asyncio.Future[None], concurrency: int = 4) -> Counter[str]:
    """Closed-loop requests (half streamed) until `during` is done; which worker answered each.
    Any other failure fails the test: the gateway must fail over, not pass errors on."""
    client = fleet.client()
    served: Counter[str] = Counter()

    async def loop(index: int) -> None:
        while not during.done():
            served[await answered_by(client, stream=index % 2 == 0)] += 1

    await asyncio.gather(*(loop(i) for i in range(concurrency)), during)
    return served


async def test_requests_fail_over_when_a_worker_container_stops_or_is_killed(fleet: Fleet) -> None:
    client = fleet.client()
    one, two = fleet.workers["worker-1"], fleet.workers["worker-2"]

    async def stop_one() -> None:
        await asyncio.to_thread(wait_for, lambda: fleet.serving("worker-1"), "worker-1 serving", 60.0)
        await asyncio.to_thread(one.stop, 30)  # SIGTERM: the worker drains, then leaves

    served = await under_load(fleet, asyncio.ensure_future(stop_one()))
    # A drained worker finishes what it started: nothing cut, streams included.
    assert served["worker-1"] > 0 and set(served) <= {"worker-1", "worker-2"}, served
    assert not one.running()
    assert {await answered_by(client, stream=False) for _ in range(4)} == {"worker-2"}

    await asyncio.to_thread(one.start)  # the same container: its key, so the same identity
    await asyncio.to_thread(fleet.wait_healthy, "worker-1")

    async def kill_two() -> None:
        await asyncio.to_thread(wait_for, lambda: fleet.serving("worker-2"), "worker-2 serving", 60.0)
        await asyncio.to_thread(two.kill)  # SIGKILL mid-request: no drain, connections reset

    served = await under_load(fleet, asyncio.ensure_future(kill_two()))
    # Whole answers in flight on the killed worker were retried on the other; only streams it had
    # begun can be cut, and they end in an error event, not a hang.
    assert served["worker-1"] > 0 and set(served) <= {"worker-1", "worker-2", "worker-2 (cut)"}, served
    assert not two.running()
    assert {await answered_by(client, stream=True) for _ in range(4)} == {"worker-1"}
    await asyncio.to_thread(two.start)
    await asyncio.to_thread(fleet.wait_healthy, "worker-1", "worker-2")


# Run inside the worker container (it has no network): one chat completion, on loopback.
ASK_INSIDE = """
import json, os, sys, urllib.request
body = {"model": sys.argv[1], "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8}
token = os.environ["INFERCDN_WORKER_ACCESS_TOKEN"]
request = urllib.request.Request(
    "http://127.0.0.1:8081/v1/chat/completions",
    data=json.dumps(body).encode(),
    headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
)
print(json.load(urllib.request.urlopen(request, timeout=60))["choices"][0]["message"]["content"])
"""


def test_the_worker_image_serves_its_bundled_model_with_no_network(images: tuple[str, str]) -> None:
    token = secrets.token_urlsafe(24)
    worker = Launch(
        WORKER_IMAGE,
        f"infercdn-t{secrets.token_hex(3)}-offline",
        "none",
        env={"INFERCDN_WORKER_THREADS": "1"},
        secrets={"INFERCDN_WORKER_ACCESS_TOKEN": token},
    ).start()
    try:
        wait_for(worker.healthcheck, "the offline worker healthy", START_TIMEOUT_S, worker)
        answer = worker.exec("python3", "-c", ASK_INSIDE, MODEL)
        assert answer.returncode == 0 and answer.stdout.strip(), answer.stderr + worker.logs()
    finally:
        worker.remove()


def test_a_broken_dockerfile_fails_the_build(images: tuple[str, str], tmp_path: Path) -> None:
    text = (DOCKER / "gateway.Dockerfile").read_text()
    broken = tmp_path / "broken.Dockerfile"
    broken.write_text(text.replace("COPY routing/ routing/", "COPY routing-gone/ routing/"))
    with pytest.raises(PodmanError, match="routing-gone"):
        build(broken, "localhost/infercdn/broken:test")


# Run inside an image: a digest of the project's installed sources, as `code_digest` makes it.
DIGEST_INSIDE = """
import hashlib, pathlib, sys
import gateway
site = pathlib.Path(gateway.__file__).parent.parent
digest = hashlib.sha256()
for path in sorted(p for package in sys.argv[1:] for p in (site / package).rglob("*.py")):
    digest.update(str(path.relative_to(site)).encode() + b"\\0" + path.read_bytes())
print(digest.hexdigest())
"""
PACKAGES = ("gateway", "routing", "edge_worker")


def code_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for package in PACKAGES for p in (root / package).rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@pytest.mark.parametrize("image", [GATEWAY_IMAGE, WORKER_IMAGE])
def test_each_image_holds_this_checkouts_code(images: tuple[str, str], image: str) -> None:
    """A stale layer cache (one that missed a change in the build stage) would ship old code."""
    inside = podman(
        "run", "--rm", "--network", "none", "--entrypoint", "python3", image, "-c", DIGEST_INSIDE, *PACKAGES
    )
    assert inside.stdout.strip() == code_digest(ROOT)
