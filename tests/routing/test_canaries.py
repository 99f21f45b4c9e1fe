"""When canaries are due and to whom (pure), and what the pool sends."""

from __future__ import annotations

import random

from routing.canaries import ASKS, TOPICS, CanaryPlan, canary_body


def test_canaries_are_due_at_their_share_of_the_requests_routed() -> None:
    plan = CanaryPlan(share=0.01)
    due_at = []
    for n in range(1, 501):
        plan.routed()
        if plan.due():
            due_at.append(n)
            plan.sent += 1
    assert due_at == [100, 200, 300, 400, 500]


def test_the_worker_with_the_fewest_greedy_checks_gets_one_and_none_once_all_have_enough() -> None:
    plan = CanaryPlan(share=0.01, wanted_greedy=5)
    assert plan.pick([("a", 3), ("b", 0), ("c", 9)]) == "b"
    assert plan.pick([("a", 5), ("c", 9)]) is None
    assert plan.pick([]) is None


def test_the_pool_is_greedy_synthetic_and_varied() -> None:
    rng = random.Random(3)
    bodies = [canary_body(rng, "m") for _ in range(200)]
    assert all(b["temperature"] == 0 and b["model"] == "m" for b in bodies)
    asked = {b["messages"][0]["content"] for b in bodies}
    assert len(asked) > 100 and len(ASKS) * len(TOPICS) >= 200
