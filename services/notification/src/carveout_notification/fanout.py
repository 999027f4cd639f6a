"""Who is told of each consumed event: the pure fan-out of a grant event or a breach.

:func:`effects_of` takes everything it decides on as arguments (the event, the contacts
of the grants it is about, the subscriptions and when each was made, the record's append
time, now, the trace context) and returns the contacts it changes, the grant contacts'
new subscriptions and the notifications due. No store, no clock: the handler loads,
calls it and saves what it returns, live and in a replay alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, assert_never

from carveout_contracts import (
    CarveoutRevoked,
    ConditionBreached,
    GrantAmended,
    GrantEvent,
    GrantIssued,
    GrantReinstated,
    GrantSuspended,
    codec,
)
from carveout_contracts.common import Frozen, UtcDatetime

from .domain import (
    NOTIFIABLE_EVENT_TYPES,
    GrantContacts,
    Subscription,
    apply,
    contact_subscription,
    new_secret,
    notification_id,
)

NotifiableEvent = GrantEvent | ConditionBreached
"""What notification consumes: ``carveout.grants`` and ``carveout.breaches``."""

Subscribed = tuple[Subscription, datetime]
"""A subscription and when it was made."""


class Notification(Frozen):
    """One event to tell one subscription of, due from ``due_at``: what the store queues."""

    notification_id: str
    subscription_id: str
    event_id: str
    event_type: str
    channel: Literal["webhook", "email"]
    address: str
    payload: str
    """The event as the receiver gets it: its wire JSON."""
    due_at: UtcDatetime
    traceparent: str | None = None
    """The W3C context its delivery continues: that of the event it tells of."""


@dataclass(frozen=True, slots=True)
class ContactChanges:
    """What an event does to the contacts of the grants it is about."""

    known: dict[str, GrantContacts]
    """Every grant the event is about that notification knows, as it is after the event."""
    changed: list[GrantContacts]
    new_subscriptions: list[Subscription]
    """The own subscriptions of a newly issued grant's contacts."""


@dataclass(frozen=True, slots=True)
class EventEffects:
    """Everything one consumed event changes, saved with its processed mark at once."""

    contacts: list[GrantContacts]
    new_subscriptions: list[Subscription]
    notifications: list[Notification]


def grants_of(event: NotifiableEvent) -> list[str]:
    """The grants an event is about, whose contacts the fan-out needs."""
    match event:
        case CarveoutRevoked():
            return list(event.data.grant_ids)
        case ConditionBreached():
            return [event.data.grant_id] if event.data.grant_id else []
        case GrantIssued() | GrantAmended() | GrantSuspended() | GrantReinstated():
            return [event.data.grant_id]
        case _:
            assert_never(event)


def grantees_of(event: NotifiableEvent, known: Mapping[str, GrantContacts]) -> set[str]:
    """The grantees an event is about: those of its grants, and the one it names."""
    grantees = {known[g].grantee_id for g in grants_of(event) if g in known}
    match event:
        case ConditionBreached():
            grantees.add(event.data.grantee_id)
        case GrantIssued():
            grantees.add(event.data.grantee.id)
    return grantees


def fold_contacts(
    event: NotifiableEvent,
    before: Mapping[str, GrantContacts | None],
    make_secret: Callable[[], str] = new_secret,
) -> ContactChanges:
    """Fold a grant event into the contacts ``before`` it of the grants it is about; a
    breach changes none. An issue first seen gives each contact its own subscription,
    signed by a secret from ``make_secret`` (the one thing here not derived)."""
    known = {g: view for g, view in before.items() if view is not None}
    if isinstance(event, ConditionBreached):
        return ContactChanges(known, [], [])
    changed: list[GrantContacts] = []
    new_subscriptions: list[Subscription] = []
    for grant_id in grants_of(event):
        view = before.get(grant_id)
        after = apply(view, event, grant_id)
        if after is None:
            continue
        known[grant_id] = after
        if after is not view:
            changed.append(after)
        if isinstance(event, GrantIssued) and view is None:
            new_subscriptions += [
                contact_subscription(after, c, make_secret) for c in after.contacts
            ]
    return ContactChanges(known, changed, new_subscriptions)


def hears_of(subscription: Subscription, created: datetime, appended_ms: int | None) -> bool:
    """Whether a subscription hears of a record the log received at ``appended_ms``.

    A subscriber hears of what the log received after it subscribed, and a grant's
    contacts of everything about their grant: the same live and in a replay, however late
    either reads the log. Without an append time, everyone hears.
    """
    return (
        subscription.grant_id is not None
        or appended_ms is None
        or appended_ms >= created.timestamp() * 1000
    )


def wants(
    subscription: Subscription, event_type: str, grants: set[str], grantees: set[str]
) -> bool:
    """Whether a subscription asked for this type of event about these grants and grantees."""
    if event_type not in subscription.event_types and "*" not in subscription.event_types:
        return False
    if subscription.grant_id is not None and subscription.grant_id not in grants:
        return False
    return subscription.grantee_id is None or subscription.grantee_id in grantees


def fan_out(
    event: NotifiableEvent,
    known: Mapping[str, GrantContacts],
    subscriptions: Sequence[Subscribed],
    new_subscriptions: Sequence[Subscription],
    appended_ms: int | None,
    now: datetime,
    traceparent: str | None,
) -> list[Notification]:
    """The notifications an event calls for, one per subscription that hears of it and
    wants it, each with the id :func:`~.domain.notification_id` derives: the same event
    and subscription give the same notification, however often it is folded."""
    if event.type not in NOTIFIABLE_EVENT_TYPES:
        return []
    grants, grantees = set(grants_of(event)), grantees_of(event, known)
    hearing = {
        s.subscription_id: s for s, created in subscriptions if hears_of(s, created, appended_ms)
    }
    hearing.update({s.subscription_id: s for s in new_subscriptions})  # made by this event
    event_id = str(event.event_id)
    payload = codec.encode_value(event).decode()
    return [
        Notification(
            notification_id=notification_id(event_id, s.subscription_id),
            subscription_id=s.subscription_id,
            event_id=event_id,
            event_type=event.type,
            channel=s.channel,
            address=s.address,
            payload=payload,
            due_at=now,
            traceparent=traceparent,
        )
        for s in hearing.values()
        if wants(s, event.type, grants, grantees)
    ]


def effects_of(
    event: NotifiableEvent,
    before: Mapping[str, GrantContacts | None],
    subscriptions: Sequence[Subscribed],
    appended_ms: int | None,
    now: datetime,
    traceparent: str | None,
    make_secret: Callable[[], str] = new_secret,
) -> EventEffects:
    """What one consumed event changes: contacts, their new subscriptions, notifications due.

    ``before`` holds the contacts of :func:`grants_of` the event (``None`` for a grant
    never seen), ``subscriptions`` every subscription with its creation time.
    """
    changes = fold_contacts(event, before, make_secret)
    notifications = fan_out(
        event,
        changes.known,
        subscriptions,
        changes.new_subscriptions,
        appended_ms,
        now,
        traceparent,
    )
    return EventEffects(changes.changed, changes.new_subscriptions, notifications)
