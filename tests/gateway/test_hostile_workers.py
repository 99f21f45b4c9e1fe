"""Workers that hold the join token and abuse it, against a real gateway (and a real worker where it matters).

Each test is one attack from issue 13 that used to be accepted: taking over
another worker's id, evicting it, claiming its load, replaying what the
gateway sent one worker against another, advertising internal addresses,
flooding registrations. The hostile worker is a real aiohttp server or real
signed messages over HTTP.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from routing.announce import (
    CONTENT_TYPE,
    MAX_MESSAGE_BYTES,
    REGISTER_PATH,
    Heartbeat,
    heartbeat_path,
    pack,
    worker_path,
)
from routing.identity import Identity
from routing.key_handover import hand_over
from tests.conftest import MODEL
from tests.gateway.standin import OFFER
from tests.gateway.test_registry import (
    fleet_ids,
    key_of,
    post_signed,
    registered_worker,
    registration,
    start_gateway,
)
from tests.waiting import wait_until


async def register(session: aiohttp.ClientSession, gw: str, worker_id: str, url: str) -> int:
    return (await post_signed(session, gw, REGISTER_PATH, pack(registration(worker_id, url=url))))[0]


async def fleet_row(session: aiohttp.ClientSession, gw: str, worker_id: str) -> dict[str, object]:
    async with session.get(f"{gw}/admin/v1/fleet") as resp:
        return next(w for w in (await resp.json())["workers"] if w["id"] == worker_id)  # type: ignore[no-any-return]


async def test_a_token_holder_cannot_take_over_evict_or_speak_for_another_worker(
    session: aiohttp.ClientSession,
) -> None:
    gateway, gw = await start_gateway()
    attacker = Identity.generate()
    try:
        assert (await post_signed(session, gw, REGISTER_PATH, pack(registration("victim"))))[0] == 200
        hijack = pack(registration("victim", url="http://127.0.0.1:6666"))
        assert (await post_signed(session, gw, REGISTER_PATH, hijack, key=attacker))[0] == 403
        # Its own id in the headers, the victim's in the body or path: refused too.
        assert (await post_signed(session, gw, REGISTER_PATH, hijack, key=attacker, worker_id="mallory"))[0] == 403
        starve = pack(Heartbeat("victim", in_flight=0, queued=1_000_000))
        assert (await post_signed(session, gw, heartbeat_path("victim"), starve, key=attacker))[0] == 403
        path = worker_path("victim")
        assert (await post_signed(session, gw, path, b"", key=attacker, method="DELETE"))[0] == 403
        assert (await post_signed(session, gw, path, b"", key=attacker, worker_id="mallory", method="DELETE"))[0] in (
            401,
            403,
        )
        row = await fleet_row(session, gw, "victim")
        assert row["url"] == "http://127.0.0.1:9" and row["queued"] == 0
        # The victim itself still speaks for itself.
        beat = pack(Heartbeat("victim", in_flight=1, queued=2))
        assert (await post_signed(session, gw, heartbeat_path("victim"), beat))[0] == 204
    finally:
        await gateway.close()


async def test_revocation_and_manual_approval_survive_a_restart(session: aiohttp.ClientSession, tmp_path: Path) -> None:
    state = str(tmp_path / "gateway.sqlite3")
    gateway, gw = await start_gateway(state_file=state, enrollment="manual")
    try:
        body = pack(registration("newcomer"))
        assert (await post_signed(session, gw, REGISTER_PATH, body))[0] == 403  # waits for an operator
        async with session.get(f"{gw}/admin/v1/enrollments") as resp:
            (row,) = (await resp.json())["enrollments"]
        assert row["worker_id"] == "newcomer" and row["state"] == "pending"
        assert row["fingerprint"] == key_of("newcomer").fingerprint
        assert await fleet_ids(session, gw) == []
        async with session.post(f"{gw}/admin/v1/enrollments/newcomer/approve") as resp:
            assert resp.status == 200
        assert (await post_signed(session, gw, REGISTER_PATH, body))[0] == 200
        assert await fleet_ids(session, gw) == ["newcomer"]
        async with session.post(f"{gw}/admin/v1/enrollments/newcomer/revoke") as resp:
            assert resp.status == 200
        assert await fleet_ids(session, gw) == []  # dropped at once
        assert (await post_signed(session, gw, REGISTER_PATH, body))[0] == 403
    finally:
        await gateway.close()
    gateway, gw = await start_gateway(state_file=state)  # a restart, even in auto mode
    try:
        assert (await post_signed(session, gw, REGISTER_PATH, pack(registration("newcomer"))))[0] == 403
        # Its key cannot come back under another id either: one key, one worker.
        other = pack(registration("newcomer-2"))
        assert (await post_signed(session, gw, REGISTER_PATH, other, key=key_of("newcomer")))[0] == 403
        assert await fleet_ids(session, gw) == []
        async with session.get(f"{gw}/admin/v1/enrollments") as resp:
            assert [r["state"] for r in (await resp.json())["enrollments"]] == ["revoked"]
    finally:
        await gateway.close()


def handover(old: Identity, new: Identity) -> str:
    """The text a worker sends after ``infercdn worker rotate-key`` handed ``old``'s id to ``new``."""
    return hand_over(old, new.public_key).text


async def enrolled_fingerprint(session: aiohttp.ClientSession, gw: str, worker_id: str) -> tuple[str, str]:
    async with session.get(f"{gw}/admin/v1/enrollments") as resp:
        row = next(r for r in (await resp.json())["enrollments"] if r["worker_id"] == worker_id)
    return row["fingerprint"], row["state"]


async def test_a_worker_rotates_its_key_and_only_the_old_key_can_hand_the_id_over(
    session: aiohttp.ClientSession,
) -> None:
    gateway, gw = await start_gateway(enrollment="manual")
    old, new, attacker = key_of("rotating"), Identity.generate(), Identity.generate()
    body = pack(registration("rotating"))
    try:
        assert (await post_signed(session, gw, REGISTER_PATH, body))[0] == 403  # waits for the operator
        async with session.post(f"{gw}/admin/v1/enrollments/rotating/approve") as resp:
            assert resp.status == 200
        assert (await post_signed(session, gw, REGISTER_PATH, body))[0] == 200
        # A new key alone is another worker: refused; a handover signed by any key but the bound one too.
        assert (await post_signed(session, gw, REGISTER_PATH, body, key=new))[0] == 403
        forged = handover(attacker, new)
        assert (await post_signed(session, gw, REGISTER_PATH, body, key=new, handover=forged))[0] == 403
        stolen = handover(old, new)  # replayed by someone who does not hold the new key
        assert (await post_signed(session, gw, REGISTER_PATH, body, key=attacker, handover=stolen))[0] == 401
        # Only on a registration: a heartbeat carrying it is still refused.
        beat = pack(Heartbeat("rotating", in_flight=0, queued=0))
        assert (await post_signed(session, gw, heartbeat_path("rotating"), beat, key=new))[0] == 403
        # The old key's handover, sent by the new key: the id moves, approved as it was, no operator needed.
        assert (await post_signed(session, gw, REGISTER_PATH, body, key=new, handover=stolen))[0] == 200
        assert await enrolled_fingerprint(session, gw, "rotating") == (new.fingerprint, "approved")
        assert (await post_signed(session, gw, heartbeat_path("rotating"), beat, key=new))[0] == 204
        # From then on the old key speaks for nothing.
        assert (await post_signed(session, gw, heartbeat_path("rotating"), beat, key=old))[0] == 403
        assert (await post_signed(session, gw, REGISTER_PATH, body, key=old))[0] == 403
        # A revoked id cannot be handed over.
        async with session.post(f"{gw}/admin/v1/enrollments/rotating/revoke") as resp:
            assert resp.status == 200
        again = handover(new, attacker)
        assert (await post_signed(session, gw, REGISTER_PATH, body, key=attacker, handover=again))[0] == 403
        assert await enrolled_fingerprint(session, gw, "rotating") == (new.fingerprint, "revoked")
    finally:
        await gateway.close()


async def test_a_replaced_key_needs_the_operator_to_forget_the_old_binding(session: aiohttp.ClientSession) -> None:
    """A worker that lost its key (no handover possible) comes back only once an operator forgets it."""
    gateway, gw = await start_gateway()
    try:
        assert (await post_signed(session, gw, REGISTER_PATH, pack(registration("rotated"))))[0] == 200
        new_key = Identity.generate()
        assert (await post_signed(session, gw, REGISTER_PATH, pack(registration("rotated")), key=new_key))[0] == 403
        async with session.delete(f"{gw}/admin/v1/enrollments/rotated") as resp:
            assert resp.status == 204
        assert (await post_signed(session, gw, REGISTER_PATH, pack(registration("rotated")), key=new_key))[0] == 200
    finally:
        await gateway.close()


async def test_internal_and_odd_advertised_urls_are_refused(session: aiohttp.ClientSession) -> None:
    """A worker advertising the metadata service or the gateway's own loopback made the gateway its proxy."""
    gateway, gw = await start_gateway(worker_networks=("10.0.0.0/8",))
    try:
        for i, url in enumerate(
            [
                "http://127.0.0.1:8080",  # loopback, outside worker_networks
                "http://169.254.169.254",  # metadata, always
                "http://[fe80::1]:80",
                "http://[::ffff:169.254.169.254]:80",
                "http://0.0.0.0:80",
                "http://u:p@10.0.0.5:80",  # userinfo used to give 500s
                "http://10.0.0.5:80/latest/meta-data/",
                "http://10.0.0.5:80#fragment",
                "http://10.0.0.5:80?q=1",
                "http://no-such-host.invalid:80",
            ]
        ):
            status, _ = await post_signed(session, gw, REGISTER_PATH, pack(registration(f"w{i}", url=url)))
            assert status == 400, url
        assert await fleet_ids(session, gw) == []
        assert await register(session, gw, "ok", "http://10.0.0.5:80") == 200
    finally:
        await gateway.close()


async def test_registrations_are_capped_per_address_and_enrollments_per_source(session: aiohttp.ClientSession) -> None:
    """2,000 registrations pointing at one host made the gateway probe it ~990 times a second."""
    gateway, gw = await start_gateway(max_workers_per_address=2, enrollments_per_minute=4)
    try:
        statuses = [await register(session, gw, f"crowd-{i}", f"http://10.0.0.9:{i + 1}") for i in range(3)]
        assert statuses == [200, 200, 403]
        more = [await register(session, gw, f"new-{i}", f"http://10.0.1.{i}:80") for i in range(3)]
        assert more == [200, 200, 429]  # four new keys a minute from one address; the refused one took none
    finally:
        await gateway.close()


async def metric_labels(session: aiohttp.ClientSession, gw: str, family: str, label: str) -> dict[str, float]:
    """Each value of ``label`` in ``family`` on the gateway's /metrics, with its samples summed."""
    async with session.get(f"{gw}/metrics") as resp:
        text = await resp.text()
    values: dict[str, float] = {}
    for metric in text_string_to_metric_families(text):
        if metric.name == family:
            for s in metric.samples:
                if s.name.endswith(("_total", "_count")) or s.name == family:
                    values[s.labels[label]] = values.get(s.labels[label], 0.0) + s.value
    return values


async def test_models_a_worker_names_cannot_grow_the_metrics_without_bound(session: aiohttp.ClientSession) -> None:
    """20,000 model ids in one registration took the gateway's /metrics from 10 KB to 22.7 MB."""
    gateway, gw = await start_gateway(metric_label_values=3)
    models = [f"junk-{i}" for i in range(8)]
    offers = tuple(replace(OFFER, model=model) for model in models)
    flood = replace(registration("flood", url="http://10.0.0.7:80"), offers=offers)
    try:
        assert (await post_signed(session, gw, REGISTER_PATH, pack(flood)))[0] == 200
        for model in models:  # each is routed (and fails: nobody listens there), so each is counted
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
            async with session.post(f"{gw}/v1/chat/completions", json=body) as resp:
                assert resp.status >= 500
        fleet = await metric_labels(session, gw, "infercdn_gateway_fleet_workers", "model")
        assert fleet == {**dict.fromkeys(sorted(models)[:3], 1.0), "other": 5.0}
        counted = await metric_labels(session, gw, "infercdn_gateway_requests", "model")
        assert counted == {**dict.fromkeys(models[:3], 1.0), "other": 5.0}
        ttft = await metric_labels(session, gw, "infercdn_gateway_request_duration_seconds", "model")
        assert set(ttft) == {*models[:3], "other"}
        # The worker leaves: its models' series go, and the labels are free for the models that come next.
        assert (await post_signed(session, gw, worker_path("flood"), b"", method="DELETE"))[0] == 204
        assert set(await metric_labels(session, gw, "infercdn_gateway_requests", "model")) == {"other"}
        assert await metric_labels(session, gw, "infercdn_gateway_request_duration_seconds", "model") == {"other": 5.0}
        assert await metric_labels(session, gw, "infercdn_gateway_routing_decisions", "worker") == {}
    finally:
        await gateway.close()


async def test_bodies_are_bounded_before_they_are_read(session: aiohttp.ClientSession) -> None:
    gateway, gw = await start_gateway()
    try:
        big = b"\x00" * (MAX_MESSAGE_BYTES + 1)
        async with session.post(gw + REGISTER_PATH, data=big, headers={"Content-Type": CONTENT_TYPE}) as resp:
            assert resp.status == 413

        async def chunks():  # type: ignore[no-untyped-def]
            yield b"\x00" * 1024

        async with session.post(gw + REGISTER_PATH, data=chunks(), headers={"Content-Type": CONTENT_TYPE}) as resp:
            assert resp.status == 413  # no Content-Length: not read at all
    finally:
        await gateway.close()


async def test_what_a_worker_receives_is_worthless_at_another_worker(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """The gateway's credential was one for all: a worker replayed it against another and got 200 with text."""
    captured: list[str] = []

    async def models(request: web.Request) -> web.Response:
        captured.append(request.headers.get("Authorization", ""))
        return web.json_response({"object": "list", "data": []})

    async def chat(request: web.Request) -> web.Response:
        captured.append(request.headers.get("Authorization", ""))
        return web.json_response({"error": {"message": "no", "type": "server_error"}}, status=500)

    hostile = web.Application()
    hostile.router.add_get("/health", models)
    hostile.router.add_post("/v1/completions", chat)
    server = TestServer(hostile, host="127.0.0.1")
    await server.start_server()
    gateway, gw = await start_gateway()
    try:
        with registered_worker(gw, "honest", tmp_path / "honest.key") as honest:
            await wait_until(lambda: fleet_ids(session, gw))
            hostile_url = str(server.make_url("")).rstrip("/")
            status, _ = await post_signed(session, gw, REGISTER_PATH, pack(registration("mallory", url=hostile_url)))
            assert status == 200
            body = {"model": MODEL, "prompt": "Hi", "max_tokens": 1}
            for _ in range(6):  # some of these reach the hostile worker, which records what it is shown
                async with session.post(f"{gw}/v1/completions", json=body) as resp:
                    await resp.read()
            await wait_until(lambda: any(c.startswith("Bearer ") for c in captured), timeout_s=10)
            for shown in {c for c in captured if c}:
                async with session.post(
                    f"{honest.url}/v1/completions", json=body, headers={"Authorization": shown}
                ) as resp:
                    assert resp.status == 401
    finally:
        await gateway.close()
        await server.close()


async def test_a_flood_of_signed_messages_is_slowed_and_cannot_flush_the_replay_window(
    session: aiohttp.ClientSession,
) -> None:
    """After a flood, a captured signed DELETE replayed 4.9 s later used to be accepted."""
    gateway, gw = await start_gateway()
    try:
        assert (await post_signed(session, gw, REGISTER_PATH, pack(registration("target"))))[0] == 200
        # A captured deregistration, never delivered: then the flood.
        status, captured = await post_signed(session, gw, REGISTER_PATH, pack(registration("target")))
        assert status == 200
        statuses = []
        for i in range(60):
            beat = pack(Heartbeat("flooder", in_flight=i, queued=0))
            if i == 0:
                assert (await post_signed(session, gw, REGISTER_PATH, pack(registration("flooder"))))[0] == 200
            statuses.append((await post_signed(session, gw, heartbeat_path("flooder"), beat))[0])
        assert 503 in statuses  # the flooder's own allowance ran out
        async with session.post(gw + REGISTER_PATH, data=pack(registration("target")), headers=captured) as resp:
            assert resp.status == 401 and (await resp.json())["error"]["code"] == "replayed_message"
        beat = pack(Heartbeat("target", in_flight=0, queued=0))
        assert (await post_signed(session, gw, heartbeat_path("target"), beat, at=time.time()))[0] == 204
    finally:
        await gateway.close()
