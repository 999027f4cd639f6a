"""Every event on the wire: one envelope, an explicit ``type`` and ``version``, typed ``data``.

The ``type`` string and ``version`` number are part of the contract and are written out
literally here; they are never derived from a class or module path. A breaking change to
an event's ``data`` gets a new ``version`` and an upcaster in :mod:`carveout_contracts.codec`.

The events of each topic are in a module of their own (``grants``, ``access``,
``breaches``, ``notifications``, ``deadletter``), each with the topic's discriminated
union; this module gathers them.
"""

from __future__ import annotations

from typing import Any

from .. import topics
from .access import AccessEvent, AccessRecorded, AccessRecordedData
from .breaches import BreachEvent, ConditionBreached, ConditionBreachedData, Violation
from .deadletter import (
    DeadLetteredData,
    DeadLetterEvent,
    MessageDeadLettered,
    MessageRedriven,
    RedrivenData,
)
from .envelope import Envelope
from .grants import (
    CarveoutRevoked,
    CarveoutRevokedData,
    Contact,
    GrantAmended,
    GrantAmendedData,
    Grantee,
    GrantEvent,
    GrantIssued,
    GrantIssuedData,
    GrantReinstated,
    GrantStatusChangeData,
    GrantSuspended,
    TermsChecks,
    affected_grants,
)
from .notifications import (
    NotificationDelivered,
    NotificationDeliveredData,
    NotificationEvent,
    NotificationFailed,
    NotificationFailedData,
    NotificationOutcomeData,
)

EVENT_CLASSES: tuple[type[Envelope], ...] = (
    GrantIssued,
    GrantAmended,
    GrantSuspended,
    GrantReinstated,
    CarveoutRevoked,
    AccessRecorded,
    ConditionBreached,
    NotificationDelivered,
    NotificationFailed,
    MessageDeadLettered,
    MessageRedriven,
)

TOPIC_UNIONS: dict[str, Any] = {
    topics.GRANTS: GrantEvent,
    topics.ACCESS: AccessEvent,
    topics.BREACHES: BreachEvent,
    topics.NOTIFICATIONS: NotificationEvent,
    topics.DEADLETTER: DeadLetterEvent,
}


def event_type(cls: type[Envelope]) -> str:
    return str(cls.model_fields["type"].default)


def current_version(cls: type[Envelope]) -> int:
    return int(cls.model_fields["version"].default)


EVENT_BY_TYPE: dict[str, type[Envelope]] = {event_type(cls): cls for cls in EVENT_CLASSES}
CURRENT_VERSION: dict[str, int] = {event_type(c): current_version(c) for c in EVENT_CLASSES}


__all__ = [
    "CURRENT_VERSION",
    "EVENT_BY_TYPE",
    "EVENT_CLASSES",
    "TOPIC_UNIONS",
    "AccessEvent",
    "AccessRecorded",
    "AccessRecordedData",
    "BreachEvent",
    "CarveoutRevoked",
    "CarveoutRevokedData",
    "ConditionBreached",
    "ConditionBreachedData",
    "Contact",
    "DeadLetterEvent",
    "DeadLetteredData",
    "Envelope",
    "GrantAmended",
    "GrantAmendedData",
    "GrantEvent",
    "GrantIssued",
    "GrantIssuedData",
    "GrantReinstated",
    "GrantStatusChangeData",
    "GrantSuspended",
    "Grantee",
    "MessageDeadLettered",
    "MessageRedriven",
    "NotificationDelivered",
    "NotificationDeliveredData",
    "NotificationEvent",
    "NotificationFailed",
    "NotificationFailedData",
    "NotificationOutcomeData",
    "RedrivenData",
    "TermsChecks",
    "Violation",
    "affected_grants",
    "current_version",
    "event_type",
]
