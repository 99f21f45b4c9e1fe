"""What went wrong on one attempt, mapped to the error tree in one place (as httpx does).

Every failure of a worker before the client has a byte is an
``AttemptFailed``: the proxy records it against that worker (or, for a busy
worker, not at all) and tries the next one. ``map_upstream_errors`` turns
aiohttp's exceptions, timeouts and broken answers into it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import aiohttp

from gateway.answers import BadAnswer
from gateway.tunnels import NoTunnel, TunnelBroken
from routing.errors import AllWorkersFailed, Busy, InferCDNError, UpstreamTimeout
from routing.health import Failure
from routing.sse import BrokenStream

log = logging.getLogger(__name__)

# A worker asking for more than this is told no: it is tried last for this long at most.
MAX_RETRY_AFTER_S = 300


class AttemptFailed(Exception):
    def __init__(self, error: InferCDNError, kind: Failure | None):
        self.error = error
        self.kind = kind  # None: the worker is fine, only full (503 or 429)

    @property
    def label(self) -> str:
        return self.kind.value if self.kind else "busy"


@contextlib.contextmanager
def map_upstream_errors(worker_id: str) -> Iterator[None]:
    try:
        yield
    except aiohttp.ConnectionTimeoutError:  # a TimeoutError too, but nothing was sent: as safe to retry as a refusal
        raise AttemptFailed(AllWorkersFailed("could not reach a worker: connect timed out"), Failure.CONNECT) from None
    except TimeoutError:
        raise AttemptFailed(UpstreamTimeout(f"worker {worker_id} sent nothing in time"), Failure.TIMEOUT) from None
    except (aiohttp.ClientConnectorError, NoTunnel) as exc:
        error = AllWorkersFailed(f"could not reach a worker: {type(exc).__name__}")
        raise AttemptFailed(error, Failure.CONNECT) from None
    except (aiohttp.ClientError, TunnelBroken) as exc:
        error = AllWorkersFailed(f"the worker broke off: {type(exc).__name__}")
        raise AttemptFailed(error, Failure.ERROR) from None
    except (BadAnswer, BrokenStream) as exc:
        # What was wrong quotes the worker's bytes: for the log, never for the client.
        log.warning("invalid answer from worker %s: %s", worker_id, exc)
        error = AllWorkersFailed("the worker sent an invalid answer", code="upstream_invalid_response")
        raise AttemptFailed(error, Failure.ERROR) from None


def failed_status(status: int, retry_after: str) -> AttemptFailed:
    """A worker's 5xx or 429: busy (try the next, no harm done) or broken."""
    if status in (429, 503):
        seconds = min(int(retry_after), MAX_RETRY_AFTER_S) if retry_after.isdigit() else 1
        busy = Busy("Every worker for this model is at capacity; retry later.", retry_after_s=max(1, seconds))
        return AttemptFailed(busy, None)
    return AttemptFailed(AllWorkersFailed(f"the worker answered {status}"), Failure.ERROR)
