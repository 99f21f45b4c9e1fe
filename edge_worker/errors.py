"""Every error the worker returns, in OpenAI's JSON shape; never a traceback."""

from __future__ import annotations

import logging

from aiohttp import web

from routing.http_errors import Handler, answer_in_openai_shape

log = logging.getLogger(__name__)


@web.middleware
async def openai_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    return await answer_in_openai_shape(request, handler, server="worker", log=log)
