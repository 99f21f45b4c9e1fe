"""Which key may speak for which worker id: enrollment, approval, revocation.

The first registration of a new key must prove the join token; it binds the
worker id it names to that key, for good (``EnrollmentStore``). From then on a
message for that id is accepted only when signed by that key: a token holder
can no longer take over, evict or speak for another worker. With
``enrollment = "manual"`` a new binding waits, refused, until an operator
approves it; a revoked one is refused from then on, across restarts. One key
binds one id. New enrollments are rate limited per source address, so a
token holder cannot flood the store.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.enrollment_store import Enrollment, EnrollmentState, EnrollmentStore
from routing.errors import Forbidden, NotFound, Unauthorized
from routing.identity import fingerprint
from routing.ratelimit import Limits, RateLimiter
from routing.signing import SignedMessage

ENROLLMENT_MODES = ("auto", "manual")


class Enrollments:
    def __init__(
        self,
        store: EnrollmentStore,
        *,
        manual: bool,
        enrollments_per_minute: int,
        wall_clock: Callable[[], float] = time.time,
    ):
        self.store = store
        self._manual = manual
        self._per_source = Limits(requests_per_minute=enrollments_per_minute)
        self._limiter = RateLimiter()
        self._wall_clock = wall_clock

    async def admit(self, message: SignedMessage, *, registering: bool, source: str) -> None:
        """Raise unless ``message``'s key speaks for its worker id, enrolling it first if it may."""
        if self.check(message, registering=registering):
            await self.enroll(message, source=source)

    def check(self, message: SignedMessage, *, registering: bool) -> bool:
        """Raise unless the key speaks for the id, or may enroll it (then True); changes nothing."""
        row = self.store.rows.get(message.worker_id)
        if row is None:
            if not (registering and message.enrollment_proven):
                raise Unauthorized(
                    f"Worker {message.worker_id} is not enrolled here: register with the join token first.",
                    code="not_enrolled",
                )
            other = self.store.by_key(message.public_key)
            if other is not None:
                raise Forbidden(
                    f"This key is already enrolled as worker {other.worker_id}: one key, one worker.",
                    code="key_in_use",
                )
            return True
        if row.public_key != message.public_key:
            raise Forbidden(
                f"Worker id {message.worker_id} is enrolled with another key; pick another id "
                "(or ask the operator to run 'infercdn fleet forget' if this worker's key was replaced).",
                code="worker_id_taken",
            )
        _refuse_unless_approved(row)
        return False

    async def enroll(self, message: SignedMessage, *, source: str) -> None:
        """Bind the message's id to its key (``check`` said it may); raise if it must wait for approval."""
        self._limiter.admit(f"enroll {source}", self._per_source, 0, self._wall_clock())
        state = EnrollmentState.PENDING if self._manual else EnrollmentState.APPROVED
        row = Enrollment(message.worker_id, message.public_key, state, self._wall_clock(), source)
        await self.store.put(row)
        _refuse_unless_approved(row)

    def listed(self) -> list[Enrollment]:
        return sorted(self.store.rows.values(), key=lambda row: row.worker_id)

    async def set_state(self, worker_id: str, state: EnrollmentState) -> Enrollment:
        row = self._row(worker_id)
        if row.state is EnrollmentState.REVOKED and state is EnrollmentState.APPROVED:
            raise Forbidden(f"Worker {worker_id} was revoked; 'forget' it and let it enroll again.")
        updated = Enrollment(row.worker_id, row.public_key, state, row.enrolled_at, row.source)
        await self.store.put(updated)
        return updated

    async def forget(self, worker_id: str) -> None:
        """Drop the binding: the id (with any key) may enroll again. A revoked key stays refused."""
        row = self._row(worker_id)
        if row.state is EnrollmentState.REVOKED:
            raise Forbidden(f"Worker {worker_id} was revoked; its key stays refused, so its binding stays too.")
        await self.store.delete(worker_id)

    def _row(self, worker_id: str) -> Enrollment:
        row = self.store.rows.get(worker_id)
        if row is None:
            raise NotFound(f"No worker {worker_id} is enrolled here.", code="unknown_worker")
        return row


def _refuse_unless_approved(row: Enrollment) -> None:
    if row.state is EnrollmentState.REVOKED:
        raise Forbidden(f"Worker {row.worker_id} was revoked by an operator.", code="worker_revoked")
    if row.state is EnrollmentState.PENDING:
        raise Forbidden(
            f"Worker {row.worker_id} (key {fingerprint(row.public_key)}) waits for an operator: "
            f"infercdn fleet approve {row.worker_id}",
            code="enrollment_pending",
        )
