"""Reputation as a state machine: what audits move a worker to, deterministically."""

from __future__ import annotations

from routing.reputation import Check, Reputation, Reputations, Standing, TrustPolicy

POLICY = TrustPolicy(probation_checks=5, suspect_clean_checks=8, window=10)
CLEAN = Check(False)
FLAG = Check(True, reason="gap")


def feed(reputation: Reputation, checks: list[Check]) -> list[Standing | None]:
    return [reputation.record(c, float(i), POLICY) for i, c in enumerate(checks)]


def test_probation_ends_after_enough_clean_checks() -> None:
    r = Reputation()
    changes = feed(r, [CLEAN] * 5)
    assert changes == [None, None, None, None, Standing.TRUSTED]
    assert r.checks == 5 and r.flags == 0


def test_one_flag_makes_a_suspect_and_the_third_within_the_window_convicts() -> None:
    r = Reputation()
    assert feed(r, [CLEAN, FLAG]) == [None, Standing.SUSPECT]
    assert feed(r, [CLEAN, FLAG]) == [None, None]  # a second: still a suspect (honest outliers come alone)
    assert feed(r, [CLEAN] * 3 + [FLAG]) == [None, None, None, Standing.CONVICTED]
    assert r.last_reason == "gap"
    # Convicted stays convicted: clean checks do not clear it.
    assert feed(r, [CLEAN] * 20) == [None] * 20
    assert r.standing is Standing.CONVICTED


def test_flags_further_apart_than_the_window_do_not_convict_and_a_suspect_earns_trust_back() -> None:
    r = Reputation()
    feed(r, [FLAG])
    changes = feed(r, [CLEAN] * 8)
    assert r.standing is Standing.TRUSTED and changes[-1] is Standing.TRUSTED
    feed(r, [CLEAN] * 2)  # the first flag has left the 10-check window
    assert feed(r, [FLAG]) == [Standing.SUSPECT]


def test_how_many_flags_convict_is_the_policys() -> None:
    strict, lenient = TrustPolicy(window=10, convict_flags=1), TrustPolicy(window=10, convict_flags=4)
    assert Reputation().record(FLAG, 0.0, strict) is Standing.CONVICTED
    r = Reputation()
    assert [r.record(c, 0.0, lenient) for c in [FLAG, FLAG, FLAG]] == [Standing.SUSPECT, None, None]
    assert r.record(FLAG, 0.0, lenient) is Standing.CONVICTED


def test_sampled_checks_convict_on_a_running_z_far_below_zero() -> None:
    honest, cheat = Reputation(), Reputation()
    # An honest worker's Z wanders around 0: it never leaves good standing.
    feed(honest, [Check(False, z) for z in [0.5, -1.2, 0.3, 1.1, -0.7, -1.9, 0.8, 0.2, -0.4, 1.5] * 3])
    assert honest.standing is Standing.TRUSTED
    changes = feed(cheat, [Check(False, -2.0)] * 10)
    # ΣZ/√n: -2/1 = -2, -4/1.41 = -2.83, -6/1.73 = -3.46 (suspect) … -14/2.65 = -5.29 (convicted)
    assert changes[2] is Standing.SUSPECT
    assert changes[6] is Standing.CONVICTED
    assert cheat.running_z is not None and cheat.running_z < POLICY.convict_z
    # Why, for people (no check was flagged on its own): the sum that convicted it.
    assert cheat.last_reason == "a running Z of -5.29 over its last 7 sampled checks"
    assert honest.last_reason == ""


def test_the_book_weighs_and_rates_by_standing_and_only_when_enabled() -> None:
    off = Reputations(POLICY)
    assert off.weight("w") == 1.0 and off.rate("w") == 0.0
    book = Reputations(POLICY, enabled=True)
    assert book.weight("w") == POLICY.probation_weight and book.rate("w") == POLICY.probation_rate
    for i in range(POLICY.convict_flags):
        book.of("w").record(FLAG, float(i), POLICY)
    assert book.convicted("w") and book.weight("w") == 0.0 and book.rate("w") == 0.0
    assert book.pardon("w", 9.0)
    assert book.of("w").standing is Standing.PROBATION and book.of("w").checks == 0
    assert not book.pardon("w", 10.0)  # not convicted any more
