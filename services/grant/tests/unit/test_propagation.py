"""The propagation fold (DESIGN §12): acks, heartbeat positions, liveness at an injected
time, completeness and who is pending."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from carveout_contracts import GrantEvent
from carveout_grant.domain import GrantRequest, apply, issue, revoke, suspend
from carveout_grant.propagation import (
    Ack,
    Beat,
    LogPosition,
    VersionEvent,
    alive_enforcers,
    next_change,
    propagation_of,
    versions_of,
)

T0 = datetime(2026, 6, 28, 14, 0, tzinfo=UTC)
GRANT = "grt_01JYXK6R3B4C5D6E7F8G9H0JKM"
AT_5 = LogPosition(partition=0, offset=5, appended_at=T0 + timedelta(milliseconds=3))
REVOKED_V2 = VersionEvent(GRANT, 2, "e-2", "carveout.revoked", T0, AT_5)


def ms(n: int) -> timedelta:
    return timedelta(milliseconds=n)


def beat(enforcer: str, at: datetime, positions: dict[int, int] | None = None) -> Beat:
    positions = positions or {}
    return Beat(enforcer, positions, {p: at for p in positions}, at=at, received_at=at)


def test_an_ack_applies_its_version_only() -> None:
    acks = [Ack("e1", GRANT, 2, T0 + ms(4)), Ack("e2", GRANT, 1, T0 + ms(5))]
    answer = propagation_of(REVOKED_V2, acks, [beat("e1", T0), beat("e2", T0)], T0 + ms(10))
    assert [(a.enforcer_id, a.applied_at, a.via) for a in answer.enforcers] == [
        ("e1", T0 + ms(4), "ack")
    ]
    assert answer.pending == ("e2",)
    assert (answer.complete, answer.complete_at) == (False, None)


def test_the_earliest_of_repeated_acks_counts() -> None:
    acks = [Ack("e1", GRANT, 2, T0 + ms(9)), Ack("e1", GRANT, 2, T0 + ms(4))]
    answer = propagation_of(REVOKED_V2, acks, [beat("e1", T0)], T0 + ms(10))
    assert [a.applied_at for a in answer.enforcers] == [T0 + ms(4)]


def test_a_heartbeat_past_the_events_offset_applies_it() -> None:
    past = beat("e1", T0 + ms(900), {0: 6})  # next offset 6: offset 5 is applied
    at_it = beat("e2", T0 + ms(900), {0: 5})  # next offset 5: not yet
    other_partition = beat("e3", T0 + ms(900), {1: 99})
    answer = propagation_of(REVOKED_V2, [], [past, at_it, other_partition], T0 + ms(1000))
    assert [(a.enforcer_id, a.applied_at, a.via) for a in answer.enforcers] == [
        ("e1", T0 + ms(900), "heartbeat")
    ]
    assert answer.pending == ("e2", "e3")


def test_a_heartbeat_dates_the_applying_from_when_it_first_showed_the_position() -> None:
    first_shown = T0 + ms(100)
    later = Beat("e1", {0: 6}, {0: first_shown}, at=T0 + ms(2100), received_at=T0 + ms(2100))
    answer = propagation_of(REVOKED_V2, [], [later], T0 + ms(2200))
    assert [a.applied_at for a in answer.enforcers] == [first_shown]
    assert (answer.complete, answer.complete_at) == (True, first_shown)


def test_an_ack_wins_over_a_heartbeat() -> None:
    answer = propagation_of(
        REVOKED_V2, [Ack("e1", GRANT, 2, T0 + ms(4))], [beat("e1", T0 + ms(900), {0: 6})], T0
    )
    assert [(a.applied_at, a.via) for a in answer.enforcers] == [(T0 + ms(4), "ack")]


def test_no_heartbeat_applies_an_event_not_yet_on_the_log() -> None:
    unpublished = VersionEvent(GRANT, 2, "e-2", "carveout.revoked", T0, None)
    answer = propagation_of(unpublished, [], [beat("e1", T0, {0: 10**6})], T0)
    assert answer.enforcers == ()
    assert answer.pending == ("e1",)


def test_an_enforcer_is_alive_while_its_heartbeat_is_under_three_seconds_old() -> None:
    beats = [beat("e1", T0)]
    assert alive_enforcers(beats, T0 + ms(2999)) == ["e1"]
    assert alive_enforcers(beats, T0 + ms(3000)) == []


def test_a_heartbeat_from_ahead_of_the_clock_counts_from_when_it_was_read() -> None:
    ahead = Beat("e1", {}, {}, at=T0 + timedelta(hours=1), received_at=T0)
    assert alive_enforcers([ahead], T0 + ms(2999)) == ["e1"]
    assert alive_enforcers([ahead], T0 + ms(3000)) == []


def test_complete_once_every_live_enforcer_applied_it() -> None:
    acks = [Ack("e1", GRANT, 2, T0 + ms(4)), Ack("e2", GRANT, 2, T0 + ms(7))]
    beats = [beat("e1", T0), beat("e2", T0)]
    answer = propagation_of(REVOKED_V2, acks, beats, T0 + ms(10))
    assert answer.pending == ()
    assert (answer.complete, answer.complete_at) == (True, T0 + ms(7))


def test_a_dead_enforcer_is_not_waited_for_and_does_not_date_completion() -> None:
    acks = [Ack("e1", GRANT, 2, T0 + ms(4)), Ack("gone", GRANT, 2, T0 + ms(3500))]
    beats = [beat("e1", T0 + ms(3000)), beat("gone", T0), beat("silent", T0)]
    answer = propagation_of(REVOKED_V2, acks, beats, T0 + ms(3500))
    assert answer.pending == ()
    assert [a.enforcer_id for a in answer.enforcers] == ["e1", "gone"]  # still listed
    assert (answer.complete, answer.complete_at) == (True, T0 + ms(4))


def test_with_no_enforcer_alive_completion_is_dated_by_those_that_applied() -> None:
    answer = propagation_of(REVOKED_V2, [Ack("e1", GRANT, 2, T0 + ms(4))], [], T0 + ms(10))
    assert (answer.complete, answer.complete_at) == (True, T0 + ms(4))


def test_nothing_applied_is_never_complete() -> None:
    answer = propagation_of(REVOKED_V2, [], [], T0)
    assert (answer.enforcers, answer.pending, answer.complete) == ((), (), False)


def test_the_answer_changes_when_a_pending_enforcer_stops_counting_as_alive() -> None:
    beats = [beat("e1", T0), beat("e2", T0 + ms(1000))]
    assert next_change(["e1", "e2"], beats, T0 + ms(500)) == ms(2500)
    assert next_change([], beats, T0) is None


def test_versions_follow_the_grants_history_revocations_of_its_carveout_included() -> None:
    request = GrantRequest.model_validate(
        {
            "carveout_id": "co-1",
            "model_id": "m",
            "grantee": {"id": "org", "name": "Org", "contacts": []},
            "valid_from": "2026-01-01T00:00:00Z",
            "valid_until": "2027-01-01T00:00:00Z",
        }
    )
    issued = issue(request, grant_id=GRANT, by="regulator", now=T0)
    other = issue(request, grant_id="grt_other", by="regulator", now=T0)
    grant, sibling = apply(None, issued), apply(None, other)
    suspended = suspend(grant, "why", by="regulator", now=T0 + ms(10))
    revoked = revoke(
        [sibling, apply(grant, suspended)], "end", carveout_id="co-1", by="r", now=T0 + ms(20)
    )
    history: list[tuple[GrantEvent, LogPosition | None]] = [
        (issued, None),
        (other, None),
        (suspended, AT_5),
        (revoked, None),
    ]
    versions = versions_of(GRANT, history)
    assert [(v.version, v.event_type, v.effective_at) for v in versions] == [
        (1, "grant.issued", T0),
        (2, "grant.suspended", T0 + ms(10)),
        (3, "carveout.revoked", T0 + ms(20)),
    ]
    assert versions[1].position == AT_5
