"""The wire contract shared by every Carveout service: topics, events, codec, roles."""

from . import topics
from .auth import ANY_ROLE, AuthError, MissingTokens, Role, TokenBook
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
)

__all__ = [
    "ANY_ROLE",
    "EVENT_BY_TYPE",
    "EVENT_CLASSES",
    "AccessRecorded",
    "AccessRecordedData",
    "AuthError",
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
    "MissingTokens",
    "NotificationDelivered",
    "NotificationFailed",
    "PoisonMessage",
    "Purposes",
    "Role",
    "Safeguards",
    "TokenBook",
    "UsageCap",
    "UserCountries",
    "Violation",
    "decode",
    "encode_value",
    "headers",
    "topics",
    "upcaster",
]

from .consistency import BadConsistencyToken, decode_token, encode_token
from .events import TermsChecks

__all__ += ["BadConsistencyToken", "TermsChecks", "decode_token", "encode_token"]
