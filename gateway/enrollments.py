"""Which key may speak for which worker id: enrollment, approval, revocation, rotation.

The first registration of a new key must prove the join token; it binds the
worker id it names to that key (``EnrollmentStore``). From then on a message
for that id is accepted only when signed by that key, or by a key it signed a
handover to (``routing.key_handover``: the binding moves to the new key and
keeps its state): a token holder can no longer take over, evict or speak for
another worker. With
``enrollment = "manual"`` a new binding waits, refused, until an operator
approves it; a revoked one is refused from then on, across restarts. One key
binds one id. New enrollments are rate limited per source address, so a
token holder cannot flood the store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from gateway.enrollment_store import Enrollment, EnrollmentState, EnrollmentStore
from routing.enrollment_decision import Decision
from routing.errors import Forbidden, NotFound, Unauthorized
from routing.identity import fingerprint
from routing.ratelimit import Limits, RateLimiter
from routing.signing import SignedMessage

ENROLLMENT_MODES = ("auto", "manual")
FORGOTTEN = "forgotten"
SHARED = "an operator, at another gateway"  # the source of a binding that came as a shared decision

log = logging.getLogger("gateway.enrollments")


class Enrollments:
    def __init__(
        self,
        store: EnrollmentStore,
        *,
        manual: bool,
        enrollments_per_minute: int,
        wall_clock: Callable[[], float] = time.time,
    ):
        # Told of each operator decision taken here, to share it with the fleet's other gateways (Consul KV).
        self.published: Callable[[Decision], Awaitable[None]] | None = None
        # Told after any operator decision, here or shared: e.g. the Consul watch looks at its entries again.
        self.listeners: list[Callable[[], Awaitable[None]]] = []
        self.store = store
        self._manual = manual
        self._per_source = Limits(requests_per_minute=enrollments_per_minute)
        self._limiter = RateLimiter()
        self._wall_clock = wall_clock

    async def admit(self, message: SignedMessage, *, registering: bool, source: str) -> None:
        """Raise unless ``message``'s key speaks for its worker id, binding it first if it may."""
        binding = self.check(message, registering=registering)
        if binding is not None:
            await self.bind(binding, source=source)

    def check(self, message: SignedMessage, *, registering: bool) -> Enrollment | None:
        """Raise unless the key speaks for the id, or may be bound to it; changes nothing.

        Returns the binding to store once the message is accepted (a new enrollment, or a handover to a
        new key), or None when the key is bound already."""
        row = self.store.rows.get(message.worker_id)
        if row is None:
            if not (registering and message.enrollment_proven):
                raise Unauthorized(
                    f"Worker {message.worker_id} is not enrolled here: register with the join token first.",
                    code="not_enrolled",
                )
            self._refuse_a_key_in_use(message.public_key)
            state = EnrollmentState.PENDING if self._manual else EnrollmentState.APPROVED
            return Enrollment(message.worker_id, message.public_key, state, self._wall_clock(), "")
        if row.public_key == message.public_key:
            _refuse_unless_approved(row)
            return None
        if not (registering and message.handed_over_by == row.public_key):
            raise Forbidden(
                f"Worker id {message.worker_id} is enrolled with another key; pick another id, rotate keys with "
                "'infercdn worker rotate-key' (the old key hands the id over), or ask the operator to run "
                "'infercdn fleet forget' if the old key is lost.",
                code="worker_id_taken",
            )
        if row.state is EnrollmentState.REVOKED:
            _refuse_unless_approved(row)  # a revoked id cannot hand itself over
        self._refuse_a_key_in_use(message.public_key)
        return replace(row, public_key=message.public_key)

    async def bind(self, binding: Enrollment, *, source: str) -> None:
        """Store what ``check`` returned; raise if the id must wait for approval."""
        previous = self.store.rows.get(binding.worker_id)
        if previous is None:  # a new enrollment: limited per source, so a token holder cannot flood the store
            self._limiter.admit(f"enroll {source}", self._per_source, 0, self._wall_clock())
            binding = replace(binding, source=source)
        else:
            log.info(
                "worker %s handed its id from key %s to key %s",
                binding.worker_id,
                fingerprint(previous.public_key),
                fingerprint(binding.public_key),
            )
        await self.store.put(binding)
        _refuse_unless_approved(binding)

    def _refuse_a_key_in_use(self, public_key: bytes) -> None:
        other = self.store.by_key(public_key)
        if other is not None:
            raise Forbidden(
                f"This key is already enrolled as worker {other.worker_id}: one key, one worker.",
                code="key_in_use",
            )

    def listed(self) -> list[Enrollment]:
        return sorted(self.store.rows.values(), key=lambda row: row.worker_id)

    async def set_state(self, worker_id: str, state: EnrollmentState) -> Enrollment:
        row = self._row(worker_id)
        if row.state is EnrollmentState.REVOKED and state is EnrollmentState.APPROVED:
            raise Forbidden(f"Worker {worker_id} was revoked; 'forget' it and let it enroll again.")
        updated = Enrollment(row.worker_id, row.public_key, state, row.enrolled_at, row.source)
        await self.store.put(updated)
        await self._publish(updated, state.value)
        return updated

    async def forget(self, worker_id: str) -> None:
        """Drop the binding: the id (with any key) may enroll again. A revoked key stays refused."""
        row = self._row(worker_id)
        if row.state is EnrollmentState.REVOKED:
            raise Forbidden(f"Worker {worker_id} was revoked; its key stays refused, so its binding stays too.")
        await self.store.delete(worker_id)
        await self._publish(row, FORGOTTEN)

    async def follow(self, decision: Decision) -> bool:
        """Apply an operator's decision taken at another gateway of the fleet; True if it changed anything.

        A revocation refuses the id here whichever key holds it (and the key, whichever id it holds); an
        approval applies to that key only; nothing un-revokes."""
        changed = await self._follow(decision)
        if changed:
            await self._tell_listeners()
        return changed

    async def _follow(self, decision: Decision) -> bool:
        row = self.store.rows.get(decision.worker_id)
        holder = self.store.by_key(decision.public_key)
        if decision.decision == FORGOTTEN:
            if row is None or row.state is EnrollmentState.REVOKED:
                return False
            await self.store.delete(decision.worker_id)
            return True
        state = EnrollmentState(decision.decision)
        if state is EnrollmentState.REVOKED:
            changed = False
            for bound in {r.worker_id: r for r in (row, holder) if r is not None}.values():
                if bound.state is not EnrollmentState.REVOKED:
                    await self.store.put(replace(bound, state=state))
                    changed = True
            if row is None and holder is None:  # not seen here yet: refused when it comes
                await self.store.put(Enrollment(decision.worker_id, decision.public_key, state, decision.at, SHARED))
                changed = True
            return changed
        if row is None and holder is None:  # approved before it came here
            await self.store.put(Enrollment(decision.worker_id, decision.public_key, state, decision.at, SHARED))
            return True
        if row is not None and row.public_key == decision.public_key and row.state is EnrollmentState.PENDING:
            await self.store.put(replace(row, state=state))
            return True
        return False

    async def _publish(self, row: Enrollment, decision: str) -> None:
        if self.published is not None:
            await self.published(Decision(row.worker_id, row.public_key, decision, int(self._wall_clock())))
        await self._tell_listeners()

    async def _tell_listeners(self) -> None:
        for listener in self.listeners:
            await listener()

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
