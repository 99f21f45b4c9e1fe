"""One error tree for the request path.

Every failure a client can see is one of these; ``gateway`` and
``edge_worker`` map them to OpenAI-shaped JSON in one place each
(``{"error": {"message", "type", "param", "code"}}``).
"""

from __future__ import annotations

from typing import Any


class InferCDNError(Exception):
    status = 500
    error_type = "server_error"
    code: str | None = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def headers(self) -> dict[str, str]:
        return {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.error_type, self.param, self.code)


def error_body(message: str, error_type: str, param: str | None, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


class InvalidRequest(InferCDNError):
    status = 400
    error_type = "invalid_request_error"
    code = "invalid_request"


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class RequestTooLarge(InvalidRequest):
    status = 413
    code = "request_too_large"


class RequestTimeout(InvalidRequest):
    status = 408
    code = "request_timeout"


class NotFound(InferCDNError):
    status = 404
    error_type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class Busy(InferCDNError):
    """The server is full right now; the client should retry after a pause."""

    status = 503
    code = "server_busy"

    def __init__(self, message: str, *, retry_after_s: int = 1, code: str | None = None):
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class NoSuitableWorker(Busy):
    """Workers serve the model, but none can take this request now."""

    code = "no_healthy_worker"


class WarmingUp(NoSuitableWorker):
    """The gateway has just started and its workers have not all announced themselves yet."""

    code = "warming_up"


class AllWorkersFailed(InferCDNError):
    status = 502
    code = "upstream_unreachable"


class UpstreamTimeout(InferCDNError):
    status = 504
    code = "upstream_timeout"


class Unauthorized(InferCDNError):
    """No credential, or a wrong one (OpenAI: 401 ``invalid_api_key``)."""

    status = 401
    error_type = "invalid_request_error"
    code = "invalid_api_key"


class Forbidden(InferCDNError):
    status = 403
    error_type = "invalid_request_error"
    code = "forbidden"


class RateLimited(InferCDNError):
    """Over a per-key limit; ``Retry-After`` and OpenAI's ``x-ratelimit-*`` headers say more."""

    status = 429
    error_type = "requests"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after_s: int, headers: dict[str, str]):
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self._headers = headers

    def headers(self) -> dict[str, str]:
        return {**self._headers, "Retry-After": str(self.retry_after_s)}
