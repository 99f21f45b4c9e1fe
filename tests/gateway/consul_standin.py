"""A stand-in Consul agent: a real aiohttp server implementing exactly the
Consul HTTP endpoints InferCDN calls, because no ``consul`` binary can be
installed on these machines (tests against a real agent run where one is on
PATH: see test_consul.py).

It mirrors Consul's documented behaviour for those endpoints:

- ``PUT /v1/agent/service/register`` with one TTL check, as ``Check`` or
  ``Checks`` (keys case-insensitive; its id is ``service:<service id>``);
  a TTL check starts ``critical`` until its first pass;
- ``PUT /v1/agent/check/pass/<check_id>`` (404 for an unknown check);
- ``PUT /v1/agent/service/deregister/<id>``;
- ``GET /v1/health/service/<name>`` with ``passing``, ``index`` and ``wait``:
  every answer carries ``X-Consul-Index``; with ``index`` the request blocks
  until the index moves past it or ``wait`` elapses (then answers the same
  data);
- a check not passed within its TTL turns ``critical``; a service critical
  for longer than ``DeregisterCriticalServiceAfter`` is deregistered;
- ``PUT /v1/kv/<key>`` (the body is the value) and ``GET /v1/kv/<prefix>?recurse``
  (``Key``, base64 ``Value``, ``ModifyIndex``; 404 when none; blocking like the
  health endpoint).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer


def parse_duration(text: str) -> float:
    total = 0.0
    for number, unit in re.findall(r"([\d.]+)(ms|s|m|h)", text):
        total += float(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def _lower_keys(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k.lower(): (v if k.lower() == "meta" else _lower_keys(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_lower_keys(v) for v in obj]
    return obj


@dataclass
class _Service:
    id: str
    name: str
    address: str
    port: int
    meta: dict[str, str]
    ttl_s: float
    deregister_after_s: float
    status: str = "critical"
    passed_at: float = 0.0
    critical_since: float = field(default_factory=time.monotonic)


class ConsulStandIn:
    def __init__(self) -> None:
        self.services: dict[str, _Service] = {}
        self.kv: dict[str, tuple[bytes, int]] = {}  # key → (value, ModifyIndex)
        self.index = 1
        self._changed = asyncio.Condition()
        self.server: TestServer | None = None
        self._ticker: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    async def start(self, port: int = 0) -> ConsulStandIn:
        app = web.Application()
        app.router.add_put("/v1/agent/service/register", self._register)
        app.router.add_put("/v1/agent/service/deregister/{id}", self._deregister)
        app.router.add_put("/v1/agent/check/pass/{check_id}", self._pass)
        app.router.add_get("/v1/health/service/{name}", self._health)
        app.router.add_put("/v1/kv/{key:.+}", self._kv_put)
        app.router.add_get("/v1/kv/{key:.+}", self._kv_get)
        self.server = TestServer(app, host="127.0.0.1", port=port)
        await self.server.start_server()
        self._ticker = asyncio.create_task(self._tick())
        return self

    async def stop(self) -> None:
        # Answer blocked queries now, as an agent does when it shuts down, rather than after their wait.
        self.index += 1
        async with self._changed:
            self._changed.notify_all()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self.server is not None:
            await self.server.close()

    async def _bump(self) -> None:
        async with self._changed:
            self.index += 1
            self._changed.notify_all()

    async def _register(self, request: web.Request) -> web.Response:
        body = _lower_keys(json.loads(await request.read()))
        # py-consul sends "Checks": [check]; Consul takes "Check" too. One check is "service:<id>".
        check = body.get("check") or (body.get("checks") or [{}])[0]
        service = _Service(
            id=body.get("id") or body["name"],
            name=body["name"],
            address=body.get("address", ""),
            port=int(body.get("port", 0)),
            meta=dict(body.get("meta") or {}),
            ttl_s=parse_duration(str(check.get("ttl", "0s"))),
            deregister_after_s=parse_duration(str(check.get("deregistercriticalserviceafter", "0s"))),
        )
        self.services[service.id] = service
        await self._bump()
        return web.Response(text="")

    async def _deregister(self, request: web.Request) -> web.Response:
        if self.services.pop(request.match_info["id"], None) is not None:
            await self._bump()
        return web.Response(text="")

    async def _pass(self, request: web.Request) -> web.Response:
        check_id = request.match_info["check_id"]
        service = self.services.get(check_id.removeprefix("service:"))
        if service is None or not check_id.startswith("service:"):
            return web.Response(status=404, text=f'Unknown check ID "{check_id}"')
        service.passed_at = time.monotonic()
        if service.status != "passing":
            service.status = "passing"
            await self._bump()
        return web.Response(text="")

    async def _kv_put(self, request: web.Request) -> web.Response:
        self.kv[request.match_info["key"]] = (await request.read(), self.index + 1)
        await self._bump()
        return web.json_response(True)

    async def _kv_get(self, request: web.Request) -> web.Response:
        await self._block(request)
        prefix = request.match_info["key"]
        found = [
            {"Key": k, "Value": base64.b64encode(v).decode(), "ModifyIndex": i, "CreateIndex": i, "Flags": 0}
            for k, (v, i) in sorted(self.kv.items())
            if (k.startswith(prefix) if "recurse" in request.query else k == prefix)
        ]
        headers = {"X-Consul-Index": str(self.index)}
        return web.json_response(found, headers=headers) if found else web.Response(status=404, headers=headers)

    async def _block(self, request: web.Request) -> None:
        """A blocking query: with ``index``, wait until the index moves past it or ``wait`` elapses."""
        wanted = int(request.query.get("index", "0") or 0)
        if wanted and wanted >= self.index:
            wait = parse_duration(request.query.get("wait", "5m")) or 300.0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait), self._changed:
                    await self._changed.wait_for(lambda: self.index > wanted)

    async def _health(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        await self._block(request)
        passing_only = "passing" in request.query
        entries = [
            {
                "Node": {"Node": "consul-standin", "Address": "127.0.0.1"},
                "Service": {"ID": s.id, "Service": s.name, "Address": s.address, "Port": s.port, "Meta": s.meta},
                "Checks": [{"CheckID": f"service:{s.id}", "ServiceID": s.id, "Status": s.status}],
            }
            for s in self.services.values()
            if s.name == name and (s.status == "passing" or not passing_only)
        ]
        return web.json_response(entries, headers={"X-Consul-Index": str(self.index)})

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            now = time.monotonic()
            changed = False
            for service in list(self.services.values()):
                if service.status == "passing" and service.ttl_s and now - service.passed_at > service.ttl_s:
                    service.status, service.critical_since, changed = "critical", now, True
                if (
                    service.status == "critical"
                    and service.deregister_after_s
                    and now - service.critical_since > service.deregister_after_s
                ):
                    del self.services[service.id]
                    changed = True
            if changed:
                await self._bump()
