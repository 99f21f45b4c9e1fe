"""The worker's OpenAI routes in front of vLLM: requests relayed byte for byte.

Chat, completions and embeddings take the same path: vLLM answers only the
ones its runner serves (an embedding model's vLLM has no chat route), and the
offer says which those are, so a gateway sends nothing else.

Only the model name may change on the way (a gateway may pin ``id:LABEL``;
vLLM knows the plain id). A client that goes away cancels the handler, which
closes the connection to vLLM, which aborts the generation. Tokens are
counted from ``usage``: for a stream whose client did not ask for it, the
relay asks vLLM for ``include_usage`` and turns that last chunk into the SSE
comment InferCDN workers end streams with, so the client sees no extra chunk.
Where a gateway asks for an audit record, vLLM is asked for the ids behind
the answer; they are taken out of each event (re-encoded) or the body, and
sealed into the record (``audit_ids``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from aiohttp import web

from edge_worker.accounting import RequestAccount
from edge_worker.audit_records import RECORDS, RecordSealer
from edge_worker.metrics import WorkerMetrics
from edge_worker.runtimes.vllm.audit_ids import AnswerIds
from routing.audit_record import ASK_HEADER, AUDIT_COMMENT, AUDIT_FIELD
from routing.errors import Busy, InvalidRequest, ModelNotFound
from routing.fleet import ModelOffer
from routing.model_ref import parse_model_ref
from routing.openai_requests import decode_json_object
from routing.sse import BrokenStream, SseEvent, SseReader, error_event
from routing.usage import Usage
from routing.wire import CLIENT_CLOSED, REQUEST_ID, USAGE_COMMENT


class VllmState(Protocol):
    """What the relay reads of the backend that supervises vLLM (it never imports it: no cycle)."""

    offer: ModelOffer | None
    url: str | None

    @property
    def serving(self) -> bool: ...


_RELAYED_HEADERS = ("Content-Type", "Cache-Control")
# The metrics' endpoint label of each relayed path (the names the llama.cpp runtime uses).
_ENDPOINTS = {"/v1/chat/completions": "chat", "/v1/completions": "completions", "/v1/embeddings": "embeddings"}
# A generation may run as long as the gateway lets it (600 s by default); only
# connecting and silences are bounded here, not aiohttp's default 300 s total.
_VLLM_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=10, sock_read=600)


class VllmRelay:
    def __init__(self, backend: VllmState, metrics: WorkerMetrics):
        self._backend = backend
        self._metrics = metrics
        self.session: aiohttp.ClientSession | None = None

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self.generate)
        app.router.add_post("/v1/completions", self.generate)
        app.router.add_post("/v1/embeddings", self.generate)

    def _audit_of(
        self, request: web.Request, body: dict[str, Any], offer: ModelOffer, endpoint: str
    ) -> AuditedAnswer | None:
        """The record a gateway asks for, where it can be made: vLLM is asked for the ids behind the answer."""
        sealer = request.app.get(RECORDS)
        if sealer is None or not request.headers.get(ASK_HEADER) or endpoint == "embeddings":
            return None
        keep = body.get("return_token_ids") is True  # the client's own ask: it gets them as vLLM sends them
        body["return_token_ids"] = True
        return AuditedAnswer(sealer, request.headers.get(REQUEST_ID, ""), offer.model, AnswerIds(keep=keep))

    async def generate(self, request: web.Request) -> web.StreamResponse:
        backend, session = self._backend, self.session
        offer, url = backend.offer, backend.url
        if not backend.serving or offer is None or url is None or session is None:
            raise Busy("vLLM is starting or restarting on this worker; retry shortly.", retry_after_s=5)
        body = decode_json_object(await request.read())
        model = body.get("model")
        if not isinstance(model, str):
            raise InvalidRequest("'model' must be a string.", param="model")
        ref = parse_model_ref(model)
        if ref.name.lower() not in (n.lower() for n in offer.names) or (
            ref.quantization and not offer.quantization.matches(ref.quantization)
        ):
            raise ModelNotFound(f"The model '{model}' is not loaded on this worker (it serves: {offer.model}).")
        body["model"] = offer.model
        hidden_usage = _ask_for_usage(body)
        endpoint = _ENDPOINTS[request.path]
        audit = self._audit_of(request, body, offer, endpoint)
        account = RequestAccount(self._metrics, offer.model, endpoint, request.headers.get(REQUEST_ID, "-"))
        status = CLIENT_CLOSED
        usage = Usage()
        response: web.StreamResponse | None = None
        try:
            headers = {"Content-Type": "application/json", REQUEST_ID: request.headers.get(REQUEST_ID, "")}
            async with session.post(
                url + request.path, data=json.dumps(body), headers=headers, timeout=_VLLM_TIMEOUT
            ) as upstream:
                status = upstream.status
                reply_headers = {k: upstream.headers[k] for k in _RELAYED_HEADERS if k in upstream.headers}
                if upstream.content_type != "text/event-stream":
                    payload = await upstream.read()
                    account.generated(0)
                    usage.from_body(payload)
                    if audit is not None and upstream.status == 200:
                        payload = audit.whole(payload)
                    return web.Response(body=payload, status=upstream.status, headers=reply_headers)
                response = web.StreamResponse(status=upstream.status, headers=reply_headers)
                await response.prepare(request)
                events = SseReader()
                async for chunk in upstream.content.iter_any():
                    account.generated(0)
                    out = b"".join(_rewrite(e, usage, hidden_usage, audit) for e in events.feed(chunk))
                    if out:
                        await response.write(out)
                await response.write_eof()
                return response
        except (aiohttp.ClientError, TimeoutError, BrokenStream) as exc:
            status = 502
            busy = Busy(f"vLLM broke off ({type(exc).__name__}); retry.", retry_after_s=1)
            if response is None or not response.prepared:
                raise busy from None
            # The stream has started: never answer twice; end it as every InferCDN stream ends on a failure.
            await response.write(error_event(busy.body()))
            await response.write_eof()
            return response
        finally:
            account.finished(usage.prompt_tokens, usage.completion_tokens)
            account.close(status)


@dataclass(slots=True)
class AuditedAnswer:
    """One answer whose ids are gathered for its audit record, and the record sealed at its end."""

    sealer: RecordSealer
    request_id: str
    model: str
    ids: AnswerIds

    def whole(self, payload: bytes) -> bytes:
        try:
            answer = json.loads(payload)
        except ValueError:
            return payload
        if not isinstance(answer, dict):
            return payload
        self.ids.take(answer)
        answer[AUDIT_FIELD] = self.sealed()
        return json.dumps(answer).encode()

    def event(self, event: SseEvent) -> SseEvent:
        if event.data is None:
            return event
        self.ids.take(event.data)
        return SseEvent(b"data: " + json.dumps(event.data, separators=(",", ":")).encode() + b"\n\n", event.data)

    def comment(self) -> bytes:
        return AUDIT_COMMENT + self.sealed().encode() + b"\n\n"

    def sealed(self) -> str:
        return self.sealer.seal(self.request_id, self.model, self.ids.prompt, self.ids.choices())


def _ask_for_usage(body: dict[str, Any]) -> bool:
    """For a stream without include_usage, ask vLLM for it anyway; True if the client did not ask."""
    if not body.get("stream"):
        return False
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        return False
    body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    return True


def _rewrite(event: SseEvent, usage: Usage, hidden_usage: bool, audit: AuditedAnswer | None) -> bytes:
    if audit is not None:
        event = audit.event(event)
        if event.done:  # the record goes just before the end, as a comment only the gateway reads
            return audit.comment() + event.raw
    if usage.from_event(event) and hidden_usage:
        # The usage-only chunk the client did not ask for (the only one with counts, as only
        # include_usage was added) becomes a comment it will skip.
        counts = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}
        return USAGE_COMMENT + json.dumps(counts, separators=(",", ":")).encode() + b"\n\n"
    return event.raw
