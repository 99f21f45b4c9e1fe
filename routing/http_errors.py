"""Every error a server of ours answers, in OpenAI's JSON shape; never a traceback.

One place for both the gateway's and the worker's error middlewares: our own
errors carry their body, aiohttp's HTTP errors (no route, wrong method, body
too large) get one, and anything else is logged and answered 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from aiohttp import web

from routing.errors import InferCDNError, error_body
from routing.wire import CLIENT_CLOSED

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}


async def answer_in_openai_shape(
    request: web.Request, handler: Handler, *, server: str, log: logging.Logger, context: str = ""
) -> web.StreamResponse:
    """The handler's response, or its failure as an OpenAI error (``server``: who hit an internal error)."""
    try:
        return await handler(request)
    except InferCDNError as exc:
        return web.json_response(exc.body(), status=exc.status, headers=exc.headers())
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.text if exc.status == 413 else f"{exc.reason}: {request.method} {request.path}"
        body = error_body(message or exc.reason, "invalid_request_error", None, _HTTP_CODES.get(exc.status))
        return web.json_response(body, status=exc.status)
    except Exception:
        log.exception("unhandled error on %s %s%s", request.method, request.path, context)
        body = error_body(f"The {server} hit an internal error.", "server_error", None, "internal_error")
        return web.json_response(body, status=500)


@dataclass(slots=True)
class EndStatus:
    code: int = 500  # until the handler says how it answered


@contextlib.contextmanager
def reported_status(report: Callable[[int], None]) -> Iterator[EndStatus]:
    """Report the status a request ended with, however it ends: what the handler set on success,
    the error's status, 499 if the client went away, 500 for anything unexpected."""
    status = EndStatus()
    try:
        yield status
    except InferCDNError as exc:
        status.code = exc.status
        raise
    except (asyncio.CancelledError, ConnectionResetError):
        status.code = CLIENT_CLOSED
        raise
    finally:
        report(status.code)
