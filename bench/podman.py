"""The InferCDN images built and run with podman, for `make test-containers` and `bench.images`.

Settings come from deploy/podman/containers.conf (runc, cgroupfs) unless CONTAINERS_CONF names
other ones; images build on BASE_IMAGE (INFERCDN_BASE_IMAGE; deploy/podman/base-image.sh makes it).
Secrets reach containers as `-e NAME` with the value in podman's environment, never in its argv.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "deploy" / "docker"
CONF = ROOT / "deploy" / "podman" / "containers.conf"
BASE_IMAGE = os.environ.get("INFERCDN_BASE_IMAGE", "localhost/infercdn-base:bookworm")
GATEWAY_IMAGE = "localhost/infercdn/gateway:test"
WORKER_IMAGE = "localhost/infercdn/worker-cpu:test"
BUILD_TIMEOUT_S = 3600.0  # a first build compiles llama.cpp on two cores
# On every image built here, so that the images later builds replaced can be pruned (`prune_replaced`).
LABEL = "org.infercdn.built-by=tests"
# How images are built here: Docker's format (the OCI one has no HEALTHCHECK, and podman would drop
# it), host networking (package mirrors), the label, the base.
BUILD_ARGS = ("--format", "docker", "--network", "host", "--label", LABEL, "--build-arg", f"BASE_IMAGE={BASE_IMAGE}")


class PodmanError(RuntimeError):
    pass


def environment(secrets: Mapping[str, str] = {}) -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": os.environ.get("CONTAINERS_CONF", str(CONF)), **secrets}


def podman(
    *args: str, secrets: Mapping[str, str] = {}, timeout: float = 300.0, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, env=environment(secrets), cwd=ROOT
    )
    if check and result.returncode != 0:
        raise PodmanError(f"podman {' '.join(args[:3])} … failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


def build(dockerfile: Path, tag: str) -> float:
    """Builds one image from the repository root; returns the seconds it took."""
    start = time.monotonic()
    podman("build", *BUILD_ARGS, "-f", str(dockerfile), "-t", tag, str(ROOT), timeout=BUILD_TIMEOUT_S)
    return time.monotonic() - start


def prune_replaced() -> None:
    """Drops the images of earlier builds that a rebuild untagged (hundreds of MB each). The layers
    that later builds reuse (llama.cpp's compile) stay: they have children, or a tag."""
    podman("image", "prune", "-f", "--filter", f"label={LABEL}")


def image_size(tag: str) -> int:
    return int(podman("image", "inspect", "--format", "{{.Size}}", tag).stdout)


@dataclass
class Container:
    name: str

    def host_port(self, inner: int) -> int:
        """The loopback port podman published this container's `inner` port on."""
        answer = podman("port", self.name, f"{inner}/tcp").stdout.split()[0]
        return int(answer.rpartition(":")[2])

    def healthcheck(self) -> bool:
        """Runs the image's HEALTHCHECK command now."""
        return podman("healthcheck", "run", self.name, check=False, timeout=30).returncode == 0

    def process_uids(self) -> set[int]:
        """The host uids of every process in the container (no user namespace: the same as inside)."""
        lines = podman("top", self.name, "huser").stdout.split()
        return {int(uid) for uid in lines[1:]}

    def running(self) -> bool:
        return podman("inspect", "--format", "{{.State.Running}}", self.name).stdout.strip() == "true"

    def logs(self) -> str:
        result = podman("logs", "--tail", "40", self.name, check=False)
        return result.stdout + result.stderr

    def exec(self, *command: str) -> subprocess.CompletedProcess[str]:
        return podman("exec", self.name, *command, check=False, timeout=120)

    def stop(self, grace_s: int) -> None:
        podman("stop", "-t", str(grace_s), self.name, timeout=grace_s + 60)

    def kill(self) -> None:
        podman("kill", self.name)

    def start(self) -> None:
        podman("start", self.name)

    def remove(self) -> None:
        podman("rm", "-f", "-v", "-t", "0", self.name, check=False)


@dataclass
class Launch:
    """One `podman run -d`: settings in `env`, secrets only by name (their values in podman's env)."""

    image: str
    name: str
    network: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)
    publish: Sequence[int] = ()
    command: Sequence[str] = ()

    def start(self) -> Container:
        args = ["run", "-d", "--name", self.name]
        if self.network:
            args += ["--network", self.network]
        for inner in self.publish:
            args += ["-p", f"127.0.0.1::{inner}"]
        for key, value in self.env.items():
            args += ["-e", f"{key}={value}"]
        for key in self.secrets:
            args += ["-e", key]
        podman(*args, self.image, *self.command, secrets=self.secrets)
        return Container(self.name)


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float, container: Container | None = None) -> float:
    """Polls `condition` (each poll is a podman or HTTP round trip) until it holds; returns the seconds taken."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout_s:
            logs = container.logs() if container else ""
            raise TimeoutError(f"{what}: not within {timeout_s:.0f} s\n{logs}")
        time.sleep(0.2)
    return time.monotonic() - start
