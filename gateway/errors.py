"""Every error the gateway returns, in OpenAI's JSON shape; never a traceback.

Also stamps each response with its request id (``x-request-id``), taken from
the client when it sent a sane one.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from routing.errors import InferCDNError, error_body
from routing.wire import REQUEST_ID

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REQUEST_ID_KEY = web.RequestKey("request_id", str)
_SANE_ID = re.compile(r"^[\w.:@/+=-]{1,128}$")
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}
# Answered before the request body was read whole (too slow, too large).
_UNREAD_BODY = (408, 413)


def request_id_of(request: web.Request) -> str:
    return request[REQUEST_ID_KEY]


def error_response(exc: InferCDNError) -> web.Response:
    return web.json_response(exc.body(), status=exc.status, headers=exc.headers())


@web.middleware
async def openai_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    given = request.headers.get(REQUEST_ID, "")
    rid = given if _SANE_ID.match(given) else uuid.uuid4().hex
    request[REQUEST_ID_KEY] = rid
    try:
        response = await handler(request)
    except InferCDNError as exc:
        response = error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.text if exc.status == 413 else f"{exc.reason}: {request.method} {request.path}"
        body = error_body(message or exc.reason, "invalid_request_error", None, _HTTP_CODES.get(exc.status))
        response = web.json_response(body, status=exc.status)
    except Exception:
        log.exception("unhandled error on %s %s (request %s)", request.method, request.path, rid)
        body = error_body("The gateway hit an internal error.", "server_error", None, "internal_error")
        response = web.json_response(body, status=500)
    if response.status in _UNREAD_BODY:
        response.force_close()  # the rest of the body is not worth reading: no lingering
    if not response.prepared:
        response.headers[REQUEST_ID] = rid
    return response
