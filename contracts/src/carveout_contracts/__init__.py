"""The wire contract shared by every Carveout service: topics, events, conditions, codec and
upcasters, consistency tokens and limits. Pydantic and the standard library only."""

from . import topics
from .codec import PoisonMessage, decode, encode_value, headers, upcaster
from .conditions import (
    BreachPolicy,
    Condition,
    DeploymentRegions,
    Purposes,
    Safeguards,
    UsageCap,
    UserCountries,
)
from .events import (
    EVENT_BY_TYPE,
    EVENT_CLASSES,
    AccessRecorded,
    AccessRecordedData,
    CarveoutRevoked,
    CarveoutRevokedData,
    ConditionBreached,
    ConditionBreachedData,
    Contact,
    Envelope,
    GrantAmended,
    GrantAmendedData,
    Grantee,
    GrantEvent,
    GrantIssued,
    GrantIssuedData,
    GrantReinstated,
    GrantStatusChangeData,
    GrantSuspended,
    MessageDeadLettered,
    NotificationDelivered,
    NotificationFailed,
    Violation,
    affected_grants,
)

__all__ = [
    "EVENT_BY_TYPE",
    "EVENT_CLASSES",
    "AccessRecorded",
    "AccessRecordedData",
    "BreachPolicy",
    "CarveoutRevoked",
    "CarveoutRevokedData",
    "Condition",
    "ConditionBreached",
    "ConditionBreachedData",
    "Contact",
    "DeploymentRegions",
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
    "NotificationDelivered",
    "NotificationFailed",
    "PoisonMessage",
    "Purposes",
    "Safeguards",
    "UsageCap",
    "UserCountries",
    "Violation",
    "affected_grants",
    "decode",
    "encode_value",
    "headers",
    "topics",
    "upcaster",
]

from .consistency import BadConsistencyToken, decode_token, encode_token
from .events import TermsChecks

__all__ += ["BadConsistencyToken", "TermsChecks", "decode_token", "encode_token"]
