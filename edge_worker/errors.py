"""Every error the worker returns, in OpenAI's JSON shape; never a traceback."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from routing.errors import InferCDNError, error_body

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}


def error_response(exc: InferCDNError) -> web.Response:
    return web.json_response(exc.body(), status=exc.status, headers=exc.headers())


@web.middleware
async def openai_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except InferCDNError as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.text if exc.status == 413 else f"{exc.reason}: {request.method} {request.path}"
        body = error_body(message or exc.reason, "invalid_request_error", None, _HTTP_CODES.get(exc.status))
        return web.json_response(body, status=exc.status)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        body = error_body("The worker hit an internal error.", "server_error", None, "internal_error")
        return web.json_response(body, status=500)
