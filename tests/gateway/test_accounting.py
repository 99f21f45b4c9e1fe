import pytest

from gateway.accounting import outcome_label
from routing.wire import CLIENT_CLOSED


@pytest.mark.parametrize(
    ("status", "attempts", "label"),
    [
        (200, 1, "served"),
        (200, 2, "failed_over"),  # a worker failed first, another answered
        (400, 1, "failed"),  # the worker refused it: the client's error, yet it reached a worker
        (400, 0, "rejected"),  # refused at the door: no worker was tried
        (404, 0, "rejected"),
        (429, 0, "rejected"),  # the key's rate limit
        (502, 3, "failed"),
        (503, 0, "failed"),  # nobody to try is the fleet's failure, not the client's
        (CLIENT_CLOSED, 1, "client_closed"),
        (CLIENT_CLOSED, 0, "client_closed"),
    ],
)
def test_every_request_gets_the_outcome_that_explains_it(status: int, attempts: int, label: str) -> None:
    assert outcome_label(status, attempts) == label
