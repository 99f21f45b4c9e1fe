"""Every error the gateway returns, in OpenAI's JSON shape; never a traceback.

Also stamps each response with its request id (``x-request-id``), taken from
the client when it sent a sane one.
"""

from __future__ import annotations

import logging
import re
import uuid

from aiohttp import web

from routing.http_errors import Handler, answer_in_openai_shape
from routing.wire import REQUEST_ID

log = logging.getLogger(__name__)

REQUEST_ID_KEY = web.RequestKey("request_id", str)
_SANE_ID = re.compile(r"^[\w.:@/+=-]{1,128}$")
# Answered before the request body was read whole (too slow, too large).
_UNREAD_BODY = (408, 413)


def request_id_of(request: web.Request) -> str:
    return request[REQUEST_ID_KEY]


@web.middleware
async def openai_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    given = request.headers.get(REQUEST_ID, "")
    rid = given if _SANE_ID.match(given) else uuid.uuid4().hex
    request[REQUEST_ID_KEY] = rid
    response = await answer_in_openai_shape(request, handler, server="gateway", log=log, context=f" (request {rid})")
    if response.status in _UNREAD_BODY:
        response.force_close()  # the rest of the body is not worth reading: no lingering
    if not response.prepared:
        response.headers[REQUEST_ID] = rid
    return response
