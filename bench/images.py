"""What the images weigh and how fast they come up: `python -m bench.images [--runs N]`.

Builds the gateway and CPU-worker images (podman's layer cache makes a rebuild quick), then, for
each: its size, and the seconds from `podman run` to its /health answering 200 on the published
port, median of N starts, beside the same process started on the host (the baseline) in the same
run, interleaved. Needs root and podman (`make container-deps` sets them up).
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import time
import urllib.request

from bench.overhead import table
from bench.podman import DOCKER, GATEWAY_IMAGE, WORKER_IMAGE, Launch, build, image_size, wait_for
from bench.servers import running

KEY = secrets.token_urlsafe(24)
KINDS = {
    # image, its port, its secret setting, the host command (module, args)
    "gateway": (GATEWAY_IMAGE, 8080, "INFERCDN_GATEWAY_API_KEY", ("gateway", "gateway")),
    "CPU worker": (WORKER_IMAGE, 8081, "INFERCDN_WORKER_ACCESS_TOKEN", ("edge_worker", "--threads", "1")),
}


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def container_start(image: str, port: int, secret: str) -> float:
    start = time.monotonic()
    container = Launch(image, f"infercdn-bench-{secrets.token_hex(3)}", secrets={secret: KEY}, publish=[port]).start()
    try:
        url = f"http://127.0.0.1:{container.host_port(port)}/health"
        wait_for(lambda: answers(url), f"{image} healthy", 300.0, container)
        return time.monotonic() - start
    finally:
        container.remove()


def host_start(module: str, args: tuple[str, ...], secret: str) -> float:
    start = time.monotonic()
    with running(module, *args, env={secret: KEY}, timeout_s=300):
        return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    built = {
        "gateway": build(DOCKER / "gateway.Dockerfile", GATEWAY_IMAGE),
        "CPU worker": build(DOCKER / "worker-cpu.Dockerfile", WORKER_IMAGE),
    }
    rows = [["image", "size MB", "rebuild s", "start to healthy s", "same on the host s", "container / host"]]
    for kind, (image, port, secret, (module, *args)) in KINDS.items():
        in_container: list[float] = []
        on_host: list[float] = []
        for _ in range(runs):
            in_container.append(container_start(image, port, secret))
            on_host.append(host_start(module, tuple(args), secret))
        c, h = statistics.median(in_container), statistics.median(on_host)
        size = image_size(image) / 1e6
        rows.append([kind, f"{size:.0f}", f"{built[kind]:.1f}", f"{c:.2f}", f"{h:.2f}", f"{c / h:.2f}"])
    print(f"{runs} starts each, medians; podman {BUILD_NOTE}")
    print(table(rows))


BUILD_NOTE = "with runc, images on the local Debian base (deploy/podman/base-image.sh)"

if __name__ == "__main__":
    main()
