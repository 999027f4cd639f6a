"""The pure fan-out: who hears of each event, and what it does to the grants' contacts.

No store and no clock: every input (the contacts before the event, the subscriptions and
when each was made, the record's append time, now, the trace context) is an argument.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from carveout_contracts import ConditionBreached, GrantIssued, codec, topics
from carveout_notification.domain import (
    CONTACT_EVENT_TYPES,
    GrantContacts,
    Subscription,
    apply,
    notification_id,
)
from carveout_notification.fanout import (
    EventEffects,
    NotifiableEvent,
    Subscribed,
    effects_of,
    fold_contacts,
    grants_of,
)

GOLDEN = Path(__file__).resolve().parents[4] / "contracts" / "golden"
GRANT_ID = "grt_01JYXK6R3B4C5D6E7F8G9H0JKM"  # the golden grant, for org-netsec
OTHER_GRANT = "grt_01JYXK6R3B4C5D6E7F8G9OTHER"
SUBSCRIBED = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
SUBSCRIBED_MS = int(SUBSCRIBED.timestamp() * 1000)
NOW = datetime(2026, 7, 2, tzinfo=UTC)
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def golden(event_type: str, **data: Any) -> Any:
    """The golden event of ``event_type``, with ``data`` fields replaced."""
    raw = json.loads((GOLDEN / f"{event_type}.v1.json").read_bytes())
    raw["data"].update(data)
    topic = topics.BREACHES if event_type == "condition.breached" else topics.GRANTS
    return codec.decode(topic, json.dumps(raw).encode())


def issued() -> GrantIssued:
    event: GrantIssued = golden("grant.issued")
    return event


def contacts() -> GrantContacts:
    view = apply(None, issued(), GRANT_ID)
    assert view is not None
    return view


def subscription(
    name: str, event_types: list[str] | None = None, grantee_id: str | None = None
) -> Subscription:
    return Subscription(
        subscription_id=f"sub_{name}",
        channel="email",
        address=f"{name}@regulator.example",
        event_types=event_types or ["*"],
        grantee_id=grantee_id,
    )


def effects(
    event: NotifiableEvent,
    subscriptions: list[Subscribed],
    before: dict[str, GrantContacts | None] | None = None,
    appended_ms: int | None = SUBSCRIBED_MS,
) -> EventEffects:
    if before is None:
        before = {grant_id: contacts() for grant_id in grants_of(event)}
    return effects_of(
        event,
        before,
        subscriptions,
        appended_ms=appended_ms,
        now=NOW,
        traceparent=TRACEPARENT,
        make_secret=lambda: "whsec_dGVzdA==",
    )


def heard(result: EventEffects) -> set[str]:
    return {n.subscription_id for n in result.notifications}


# --------------------------------------------------------------------------- who hears what


def test_a_subscription_hears_the_types_it_asked_for_about_its_grantee() -> None:
    everything = subscription("everything")
    breaches = subscription("breaches", event_types=["condition.breached"])
    of_netsec = subscription("netsec", grantee_id="org-netsec")
    of_another = subscription("another", grantee_id="org-another")
    subscribed = [(s, SUBSCRIBED) for s in (everything, breaches, of_netsec, of_another)]

    assert heard(effects(golden("grant.suspended"), subscribed)) == {"sub_everything", "sub_netsec"}
    assert heard(effects(golden("condition.breached"), subscribed)) == {
        "sub_everything",
        "sub_breaches",
        "sub_netsec",
    }


def test_a_breach_of_no_grant_is_heard_by_its_grantees_subscribers() -> None:
    breach = golden("condition.breached", grant_id=None, grant_version=None)
    of_netsec = subscription("netsec", grantee_id="org-netsec")

    result = effects(breach, [(of_netsec, SUBSCRIBED)])

    assert grants_of(breach) == []
    assert heard(result) == {"sub_netsec"}


def test_a_subscription_made_after_the_record_was_appended_does_not_hear_it() -> None:
    before = subscription("before")
    at_once = subscription("at-once")
    after = subscription("after")
    subscribed = [
        (before, SUBSCRIBED - timedelta(seconds=1)),
        (at_once, SUBSCRIBED),
        (after, SUBSCRIBED + timedelta(milliseconds=1)),
    ]

    result = effects(golden("grant.suspended"), subscribed, appended_ms=SUBSCRIBED_MS)

    assert heard(result) == {"sub_before", "sub_at-once"}


def test_without_an_append_time_every_subscription_hears() -> None:
    late = subscription("late")

    result = effects(golden("grant.suspended"), [(late, NOW)], appended_ms=None)

    assert heard(result) == {"sub_late"}


def test_a_grants_contacts_hear_everything_about_their_grant_only() -> None:
    """Their subscriptions are made on reading ``grant.issued``, after every record they
    hear of was appended; the contacts of another grant hear nothing of this one."""
    made = effects(issued(), [], before={GRANT_ID: None}, appended_ms=0)
    own = [(s, NOW) for s in made.new_subscriptions]
    [other] = fold_contacts(
        golden("grant.issued", grant_id=OTHER_GRANT), {OTHER_GRANT: None}
    ).new_subscriptions

    assert heard(made) == {s.subscription_id for s in made.new_subscriptions}
    for event_type in CONTACT_EVENT_TYPES:
        if event_type != "grant.issued":
            result = effects(golden(event_type), [*own, (other, NOW)], appended_ms=0)
            assert heard(result) == {s.subscription_id for s, _ in own}, event_type
    assert heard(effects(golden("grant.amended"), own, appended_ms=0)) == set()  # not asked for


# --------------------------------------------------------------------------- what is queued


def test_notification_ids_are_derived_from_the_event_and_the_subscription() -> None:
    event = golden("condition.breached")
    subscribed = [(subscription("a"), SUBSCRIBED), (subscription("b"), SUBSCRIBED)]

    first, again = effects(event, subscribed), effects(event, list(reversed(subscribed)))

    ids = {n.notification_id for n in first.notifications}
    assert ids == {notification_id(str(event.event_id), s.subscription_id) for s, _ in subscribed}
    assert ids == {n.notification_id for n in again.notifications}


def test_a_notification_carries_the_event_its_time_and_its_trace() -> None:
    event: ConditionBreached = golden("condition.breached")

    [queued] = effects(event, [(subscription("a"), SUBSCRIBED)]).notifications

    assert queued.event_id == str(event.event_id)
    assert queued.event_type == "condition.breached"
    assert (queued.channel, queued.address) == ("email", "a@regulator.example")
    assert codec.decode(topics.BREACHES, queued.payload.encode()) == event
    assert queued.due_at == NOW
    assert queued.traceparent == TRACEPARENT


# --------------------------------------------------------------------------- contacts


def test_an_issue_first_seen_gives_the_contacts_and_their_own_subscriptions() -> None:
    result = effects(issued(), [], before={GRANT_ID: None})

    assert result.contacts == [contacts()]
    assert {(s.channel, s.address, s.grant_id) for s in result.new_subscriptions} == {
        (c.kind, c.address, GRANT_ID) for c in contacts().contacts
    }
    assert all(s.secret == "whsec_dGVzdA==" for s in result.new_subscriptions if s.secret)


def test_an_issue_seen_again_changes_nothing_and_makes_no_subscription() -> None:
    result = effects(issued(), [])

    assert result.contacts == []
    assert result.new_subscriptions == []


def test_a_breach_changes_no_contacts() -> None:
    result = effects(golden("condition.breached"), [])

    assert result.contacts == [] and result.new_subscriptions == []


def test_a_revocation_concerns_and_changes_every_grant_it_names() -> None:
    revocation = golden("carveout.revoked", grant_ids=[GRANT_ID, OTHER_GRANT])
    before: dict[str, GrantContacts | None] = {GRANT_ID: contacts(), OTHER_GRANT: None}

    result = effects(revocation, [], before=before)

    assert grants_of(revocation) == [GRANT_ID, OTHER_GRANT]
    assert [(c.grant_id, c.status) for c in result.contacts] == [(GRANT_ID, "revoked")]
