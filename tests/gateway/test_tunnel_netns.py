"""Workers behind NAT for real: Linux network namespaces, inbound TCP dropped by nftables, WAN delays.

The test makes (root needed; it fails, never skips, where namespaces cannot be made):

    this namespace (the client)  --10.199.0.0/30--  gw: the gateway on :8080, one delaying relay per worker
    gw  --10.199.1.0/30--  near: a real llama.cpp worker, its relay 5 ms each way
    gw  --10.199.2.0/30--  far:  a real llama.cpp worker, its relay 80 ms each way

Both worker namespaces drop every TCP connection opened from outside (``netns.NO_INBOUND``), as a
home router does, so the workers can only dial out: each registers and opens its tunnel through its
relay (``tc netem`` is not in this kernel, so the relays stand for the distance). The near one is told
to (``--tunnel``); the far one is not, and tunnels once the gateway says its probes cannot get through.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import MODEL
from tests.gateway.netns import Namespaces, namespaces
from tests.gateway.test_registry import TOKEN
from tests.waiting import poll_until, wait_until

ADMIN = "admin-key-for-netns-tests-0123"
GATEWAY = "http://10.199.0.2:8080"
WORKER_PORT = 8081
QUESTION = {"model": MODEL, "prompt": "The capital of France is", "max_tokens": 8, "temperature": 0}


@dataclass(frozen=True)
class Edge:
    worker_id: str
    namespace: str
    address: str  # its own, which nobody can dial
    relay: str  # where it dials the gateway


@dataclass
class Wan:
    spaces: Namespaces
    gateway_ns: str
    near: Edge
    far: Edge
    relays: dict[str, subprocess.Popen[bytes]]  # by worker namespace
    logs: Path


def log_tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"


@pytest.fixture
def wan(tmp_path: Path) -> Iterator[Wan]:
    with namespaces() as spaces:
        gw, near_ns, far_ns = spaces.make("gw"), spaces.make("near"), spaces.make("far")
        spaces.link(None, "10.199.0.1", gw, "10.199.0.2", "c")
        spaces.link(gw, "10.199.1.1", near_ns, "10.199.1.2", "n")
        spaces.link(gw, "10.199.2.1", far_ns, "10.199.2.2", "f")
        for ns in (near_ns, far_ns):
            spaces.refuse_inbound(ns)
        state = tmp_path / "gateway-state"
        spaces.spawn(
            gw,
            ["-m", "gateway", "gateway", "--host", "0.0.0.0", "--port", "8080"],
            {
                "XDG_STATE_HOME": str(state),
                "INFERCDN_GATEWAY_JOIN_TOKEN": TOKEN,
                "INFERCDN_GATEWAY_ADMIN_KEY": ADMIN,
                "INFERCDN_GATEWAY_ALLOW_OPEN": "true",
            },
            tmp_path / "gateway.log",
        )
        relays: dict[str, subprocess.Popen[bytes]] = {}
        for edge_ns, listen, delay in ((near_ns, "10.199.1.1", "0.005"), (far_ns, "10.199.2.1", "0.080")):
            log = tmp_path / f"relay-{edge_ns}.log"
            relays[edge_ns] = spaces.spawn(
                gw, ["-m", "tests.gateway.delay_relay", listen, "9000", "127.0.0.1", "8080", delay], {}, log
            )
            poll_until(lambda log=log: "ready" in log.read_text())
        near = Edge("near", near_ns, "10.199.1.2", "http://10.199.1.1:9000")
        far = Edge("far", far_ns, "10.199.2.2", "http://10.199.2.1:9000")
        yield Wan(spaces, gw, near, far, relays, tmp_path)


def start_worker(wan: Wan, edge: Edge, *, tunnel_flag: bool) -> None:
    """A worker in ``edge``'s namespace: told to tunnel (``--tunnel``), or left to find out (it registers as
    dialable, and the gateway, whose probes are dropped, tells it to tunnel)."""
    wan.spaces.spawn(
        edge.namespace,
        [
            *("-m", "edge_worker", "--threads", "1", "--gateway", edge.relay, "--worker-id", edge.worker_id),
            *(("--tunnel",) if tunnel_flag else ()),
            *("--advertise-url", f"http://{edge.address}:{WORKER_PORT}"),
            *("--host", "0.0.0.0", "--port", str(WORKER_PORT)),
        ],
        {"INFERCDN_WORKER_JOIN_TOKEN": TOKEN, "INFERCDN_WORKER_KEY_FILE": str(wan.logs / f"{edge.worker_id}.key")},
        wan.logs / f"worker-{edge.worker_id}.log",
    )


async def fleet(session: aiohttp.ClientSession) -> dict[str, dict[str, object]]:
    async with session.get(f"{GATEWAY}/admin/v1/fleet", headers={"Authorization": f"Bearer {ADMIN}"}) as resp:
        return {row["id"]: row for row in (await resp.json())["workers"]}


async def tunnelled_and_measured(session: aiohttp.ClientSession, worker_ids: tuple[str, ...]) -> bool:
    try:
        rows = await fleet(session)
    except aiohttp.ClientError:
        return False
    return all(
        w in rows
        and rows[w]["via"] == "tunnel"
        and rows[w]["health"] not in ("unreachable", "ejected")
        and rows[w]["rtt_ms"] is not None
        for w in worker_ids
    )


async def complete(session: aiohttp.ClientSession) -> tuple[int, str, str]:
    async with session.post(f"{GATEWAY}/v1/completions", json=QUESTION) as resp:
        body = await resp.json()
        text = body["choices"][0]["text"] if resp.status == 200 else str(body)
        return resp.status, resp.headers.get("x-infercdn-worker", ""), text


async def test_workers_nobody_can_dial_serve_through_tunnels_the_near_one_first_and_a_lost_tunnel_loses_nothing(
    wan: Wan,
) -> None:
    start_worker(wan, wan.near, tunnel_flag=True)
    start_worker(wan, wan.far, tunnel_flag=False)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        try:
            await wait_until(lambda: tunnelled_and_measured(session, ("near", "far")), timeout_s=120)
        except AssertionError:
            logs = "\n".join(f"--- {p.name}\n{log_tail(p)}" for p in sorted(wan.logs.glob("*.log")))
            raise AssertionError(f"the workers never served through their tunnels:\n{logs}") from None

        # The far one was not told to tunnel: the gateway could not dial it and said so.
        assert "serving it through a tunnel" in (wan.logs / "worker-far.log").read_text()
        # Nobody can dial them: their own servers listen, but a connection from outside is dropped.
        for edge in (wan.near, wan.far):
            assert wan.spaces.can_connect(edge.namespace, edge.address, WORKER_PORT, timeout_s=5)
            assert not wan.spaces.can_connect(wan.gateway_ns, edge.address, WORKER_PORT, timeout_s=0.5)
            assert wan.spaces.dropped_syns(edge.namespace) >= 1

        # The gateway measured the distance through the tunnels' pings, and prefers the near one.
        rows = await fleet(session)
        near_rtt, far_rtt = float(rows["near"]["rtt_ms"]), float(rows["far"]["rtt_ms"])  # type: ignore[arg-type]
        assert far_rtt >= 150 and near_rtt < far_rtt - 100, (near_rtt, far_rtt)
        answers = [await complete(session) for _ in range(10)]
        assert all(status == 200 and "Paris" in text for status, _, text in answers), answers
        assert sum(worker == "near" for _, worker, _ in answers) >= 8, answers

        # The near worker's tunnel dies mid-load (its link goes): no non-streaming request is lost.
        load = [asyncio.create_task(complete(session)) for _ in range(12)]
        await wait_until(lambda: near_busy(session))
        wan.relays[wan.near.namespace].send_signal(signal.SIGKILL)
        results = await asyncio.gather(*load)
        assert all(status == 200 and "Paris" in text for status, _, text in results), results
        assert any(worker == "far" for _, worker, _ in results), results


async def near_busy(session: aiohttp.ClientSession) -> bool:
    return int((await fleet(session))["near"]["in_flight"]) > 0  # type: ignore[call-overload]
