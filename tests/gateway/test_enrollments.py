"""Following operator decisions taken at another gateway: nothing un-revokes, approvals bind one key."""

from __future__ import annotations

from gateway.enrollment_store import Enrollment, EnrollmentState, EnrollmentStore
from gateway.enrollments import Enrollments
from routing.enrollment_decision import Decision
from routing.identity import Identity

A, B = Identity.generate().public_key, Identity.generate().public_key


async def enrollments(*rows: Enrollment) -> Enrollments:
    store = await EnrollmentStore.open(":memory:")
    for row in rows:
        await store.put(row)
    return Enrollments(store, manual=True, enrollments_per_minute=10)


def state_of(book: Enrollments, worker_id: str) -> tuple[bytes, EnrollmentState] | None:
    row = book.store.rows.get(worker_id)
    return None if row is None else (row.public_key, row.state)


async def test_a_revocation_refuses_the_id_and_the_key_here_even_before_they_come() -> None:
    book = await enrollments(Enrollment("other-id", B, EnrollmentState.APPROVED, 0.0, "x"))
    assert await book.follow(Decision("w", A, "revoked", 5))
    assert state_of(book, "w") == (A, EnrollmentState.REVOKED)  # not seen here yet: refused when it comes
    assert await book.follow(Decision("w2", B, "revoked", 5))  # its key holds another id here: that one goes
    assert state_of(book, "other-id") == (B, EnrollmentState.REVOKED)
    assert not await book.follow(Decision("w", A, "revoked", 6))  # once is enough
    for later in ("approved", "forgotten"):  # nothing un-revokes
        assert not await book.follow(Decision("w", A, later, 7))
    assert state_of(book, "w") == (A, EnrollmentState.REVOKED)


async def test_an_approval_applies_to_the_key_it_names_only() -> None:
    book = await enrollments(Enrollment("w", A, EnrollmentState.PENDING, 0.0, "x"))
    assert not await book.follow(Decision("w", B, "approved", 5))  # here the id waits with another key
    assert state_of(book, "w") == (A, EnrollmentState.PENDING)
    assert await book.follow(Decision("w", A, "approved", 5))
    assert state_of(book, "w") == (A, EnrollmentState.APPROVED)
    assert await book.follow(Decision("new", B, "approved", 5))  # approved before it came here
    assert state_of(book, "new") == (B, EnrollmentState.APPROVED)
    assert await book.follow(Decision("new", B, "forgotten", 6))
    assert state_of(book, "new") is None
