"""Every event on the wire: one envelope, an explicit ``type`` and ``version``, typed ``data``.

The ``type`` string and ``version`` number are part of the contract and are written out
literally here; they are never derived from a class or module path. A breaking change to
an event's ``data`` gets a new ``version`` and an upcaster in :mod:`carveout_contracts.codec`.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Self
from uuid import UUID, uuid4

from pydantic import (
    EmailStr,
    Field,
    HttpUrl,
    JsonValue,
    NonNegativeInt,
    PositiveInt,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)

from . import limits, topics
from .common import (
    MAX_UNITS,
    Cause,
    CountryCode,
    Frozen,
    Identifier,
    ListString,
    Reason,
    Severity,
    UtcDatetime,
    utcnow,
)
from .conditions import BreachPolicy, Condition, check_unique_condition_ids

# --------------------------------------------------------------------------- data parts


class Contact(Frozen):
    """Where a party wants to hear about a grant: a webhook URL or an email address."""

    kind: Literal["webhook", "email"]
    address: str = Field(min_length=3, max_length=limits.MAX_ADDRESS)

    @model_validator(mode="after")
    def _address_fits_kind(self) -> Self:
        if self.kind == "webhook":
            url = HttpUrl(self.address)
            if url.scheme not in ("http", "https"):
                raise ValueError("a webhook address must be an http or https URL")
        else:
            TypeAdapter(EmailStr).validate_python(self.address)
        return self


class Grantee(Frozen):
    """The vetted organisation a grant is made to."""

    id: Identifier
    name: Identifier
    contacts: list[Contact] = Field(default_factory=list, max_length=limits.MAX_CONTACTS)


class TermsChecks(Frozen):
    """Checks every model carrying grant terms (validity, conditions, policy) must pass."""

    @field_validator("conditions", check_fields=False)
    @classmethod
    def _unique_condition_ids(cls, value: list[Condition]) -> list[Condition]:
        return check_unique_condition_ids(value)

    @model_validator(mode="after")
    def _window_is_ordered(self) -> Self:
        if self.valid_until <= self.valid_from:  # type: ignore[attr-defined]
            raise ValueError("valid_until must be later than valid_from")
        return self


class GrantIssuedData(TermsChecks):
    grant_id: Identifier
    carveout_id: Identifier
    version: Literal[1] = 1
    grantee: Grantee
    model_id: Identifier
    valid_from: UtcDatetime
    valid_until: UtcDatetime
    conditions: list[Condition] = Field(default_factory=list, max_length=limits.MAX_CONDITIONS)
    breach_policy: BreachPolicy = Field(default_factory=BreachPolicy)
    issued_by: Identifier


class GrantAmendedData(TermsChecks):
    grant_id: Identifier
    version: PositiveInt
    valid_from: UtcDatetime
    valid_until: UtcDatetime
    conditions: list[Condition] = Field(default_factory=list, max_length=limits.MAX_CONDITIONS)
    breach_policy: BreachPolicy = Field(default_factory=BreachPolicy)
    amended_by: Identifier
    reason: Reason
    effective_at: UtcDatetime


class GrantStatusChangeData(Frozen):
    grant_id: Identifier
    version: PositiveInt
    reason: Reason
    by: Identifier
    effective_at: UtcDatetime
    cause: Cause = "regulator"
    breach_ids: list[str] = Field(default_factory=list)


class CarveoutRevokedData(Frozen):
    carveout_id: Identifier
    grant_ids: list[Identifier] = Field(min_length=1)
    reason: Reason
    revoked_by: Identifier
    effective_at: UtcDatetime
    cause: Cause = "regulator"
    breach_ids: list[str] = Field(default_factory=list)
    grant_versions: dict[str, PositiveInt] = Field(
        default_factory=dict, description="Each revoked grant's version after the revocation."
    )


class AccessRecordedData(Frozen):
    request_id: Identifier
    grantee_id: Identifier
    model_id: Identifier
    grant_id: Identifier | None = None
    user_id: Identifier
    user_country: CountryCode
    deployment_region: Identifier
    purpose: Identifier
    safeguards: list[ListString] = Field(default_factory=list, max_length=limits.MAX_SAFEGUARDS)
    units: Annotated[int, Field(ge=0, le=MAX_UNITS)] = 0
    gateway_id: Identifier


class Violation(Frozen):
    """One condition an access broke, with what the grant expected and what it got."""

    condition_id: Annotated[str, Field(max_length=limits.MAX_ID)]
    kind: Annotated[str, Field(max_length=limits.MAX_ID)]
    severity: Severity
    expected: JsonValue = None
    actual: JsonValue = None


class ConditionBreachedData(Frozen):
    breach_id: Identifier
    grant_id: Identifier | None
    grant_version: PositiveInt | None
    grantee_id: Identifier
    model_id: Identifier
    access_event_id: UUID
    request_id: Identifier
    severity: Severity
    violations: list[Violation] = Field(min_length=1, max_length=limits.MAX_VIOLATIONS)
    access_occurred_at: UtcDatetime | None = None
    user_id: str | None = None
    gateway_id: str | None = None


class NotificationOutcomeData(Frozen):
    notification_id: Identifier
    subscription_id: Identifier
    source_event_id: UUID
    source_event_type: str
    channel: Literal["webhook", "email"]
    address: str
    attempts: PositiveInt


class NotificationDeliveredData(NotificationOutcomeData):
    delivered_at: UtcDatetime


class NotificationFailedData(NotificationOutcomeData):
    failed_at: UtcDatetime
    error: str


class DeadLetteredData(Frozen):
    source_topic: str
    source_partition: NonNegativeInt | None = None
    source_offset: NonNegativeInt | None = None
    source_key: str | None = None
    consumer: str = Field(description="The service (consumer group) that gave up on the message.")
    reason: Literal[
        "bad_json", "unknown_type", "unsupported_version", "invalid", "too_large", "failed"
    ]
    error: str
    payload: str = Field(
        description="The original message value: UTF-8 text, or base64; when ``truncated``, "
        "only its first bytes (base64)."
    )
    payload_encoding: Literal["utf-8", "base64"] = "utf-8"
    headers: dict[str, str] = Field(default_factory=dict)
    truncated: bool = Field(
        False,
        description="The value was too large to keep whole: ``payload`` holds its head; "
        "``size`` and ``sha256`` identify it at its source position.",
    )
    size: NonNegativeInt | None = Field(None, description="The original value's size in bytes.")
    sha256: str | None = Field(None, description="The original value's SHA-256, in hex.")


class RedrivenData(Frozen):
    entry_id: UUID = Field(description="The event_id of the dead-letter entry re-driven.")
    source_topic: str = Field(description="Where the original bytes were published again.")
    partition: NonNegativeInt | None = Field(None, description="Where the copy landed.")
    offset: NonNegativeInt | None = None
    by: str = Field(description="Who re-drove it (the operator's login).")


# --------------------------------------------------------------------------- envelope


class _Attributes:
    """Read a raw ``data`` dict with attribute access, so ``key_of`` serves both forms."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def __getattr__(self, name: str) -> Any:
        if isinstance(self._raw, dict):
            return self._raw[name]
        return getattr(self._raw, name)


class Envelope(Frozen):
    """The envelope every event travels in. The Kafka message key is ``key``."""

    TOPIC: ClassVar[str]

    event_id: UUID = Field(default_factory=uuid4)
    type: str
    version: int
    occurred_at: UtcDatetime = Field(default_factory=utcnow)
    producer: Identifier
    key: str
    data: Any

    @classmethod
    def key_of(cls, data: Any) -> str:
        raise NotImplementedError

    @field_validator("version", mode="before")
    @classmethod
    def _integer_version(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"version must be an integer, got {value!r}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _wire_fields_present(cls, values: Any, info: ValidationInfo) -> Any:
        """On the wire, ``event_id`` and ``occurred_at`` must be given, never defaulted:
        consumers dedupe by the one and judge by the other."""
        if info.context and info.context.get("wire") and isinstance(values, dict):
            missing = [name for name in ("event_id", "occurred_at") if name not in values]
            if missing:
                raise ValueError(f"missing {' and '.join(missing)}")
        return values

    @model_validator(mode="before")
    @classmethod
    def _default_key(cls, values: Any) -> Any:
        if isinstance(values, dict) and "key" not in values and "data" in values:
            try:
                return {**values, "key": cls.key_of(_Attributes(values["data"]))}
            except (AttributeError, KeyError, TypeError, IndexError):
                pass  # no key to derive: validation names what is missing
        return values


class _GrantEvent(Envelope):
    TOPIC: ClassVar[str] = topics.GRANTS

    @classmethod
    def key_of(cls, data: Any) -> str:
        return str(data.grant_id)


class GrantIssued(_GrantEvent):
    """A regulator issued a new grant under a carveout. Produced by the grant service."""

    type: Literal["grant.issued"] = "grant.issued"
    version: Literal[1] = 1
    data: GrantIssuedData


class GrantAmended(_GrantEvent):
    """A regulator replaced a grant's conditions, validity or breach policy.

    Produced by the grant service; ``data`` holds the complete new terms.
    """

    type: Literal["grant.amended"] = "grant.amended"
    version: Literal[1] = 1
    data: GrantAmendedData


class GrantSuspended(_GrantEvent):
    """A grant stopped covering accesses until reinstated, by a regulator or its breach policy.

    Produced by the grant service.
    """

    type: Literal["grant.suspended"] = "grant.suspended"
    version: Literal[1] = 1
    data: GrantStatusChangeData


class GrantReinstated(_GrantEvent):
    """A suspended grant covers accesses again. Produced by the grant service."""

    type: Literal["grant.reinstated"] = "grant.reinstated"
    version: Literal[1] = 1
    data: GrantStatusChangeData


class CarveoutRevoked(_GrantEvent):
    """A carveout was revoked, ending every listed grant for good.

    Produced by the grant service, on a regulator's order or by a grant's breach policy.
    Keyed by the first revoked grant's id.
    """

    type: Literal["carveout.revoked"] = "carveout.revoked"
    version: Literal[1] = 1
    data: CarveoutRevokedData

    @classmethod
    def key_of(cls, data: Any) -> str:
        return str(data.grant_ids[0])


class AccessRecorded(Envelope):
    """A model gateway served (or was asked for) one access to a restricted model.

    Produced by gateways; ``occurred_at`` is when the access happened.
    """

    TOPIC: ClassVar[str] = topics.ACCESS
    type: Literal["access.recorded"] = "access.recorded"
    version: Literal[1] = 1
    data: AccessRecordedData

    @classmethod
    def key_of(cls, data: Any) -> str:
        return str(data.grantee_id)


class ConditionBreached(Envelope):
    """An access broke one or more conditions, or had no grant in force.

    Produced by the enforcement service; keyed by grant id, or grantee id when no grant matched.
    """

    TOPIC: ClassVar[str] = topics.BREACHES
    type: Literal["condition.breached"] = "condition.breached"
    version: Literal[1] = 1
    data: ConditionBreachedData

    @classmethod
    def key_of(cls, data: Any) -> str:
        return str(data.grant_id or data.grantee_id)


class _NotificationEvent(Envelope):
    TOPIC: ClassVar[str] = topics.NOTIFICATIONS

    @classmethod
    def key_of(cls, data: Any) -> str:
        return str(data.subscription_id)


class NotificationDelivered(_NotificationEvent):
    """A notification reached its subscriber. Produced by the notification service."""

    type: Literal["notification.delivered"] = "notification.delivered"
    version: Literal[1] = 1
    data: NotificationDeliveredData


class NotificationFailed(_NotificationEvent):
    """A notification could not be delivered after its last attempt.

    Produced by the notification service.
    """

    type: Literal["notification.failed"] = "notification.failed"
    version: Literal[1] = 1
    data: NotificationFailedData


class MessageDeadLettered(Envelope):
    """A consumer could not process a message and set it aside, with the reason.

    Produced by whichever service consumed it; keyed by the source topic.
    """

    TOPIC: ClassVar[str] = topics.DEADLETTER
    type: Literal["message.dead_lettered"] = "message.dead_lettered"
    version: Literal[1] = 1
    data: DeadLetteredData

    @classmethod
    def key_of(cls, data: Any) -> str:
        return str(data.source_topic)


class MessageRedriven(Envelope):
    """An operator re-drove a dead-lettered message: its original bytes were published again
    to its source topic, with its key and headers.

    Produced by ``carveout dlq redrive``; keyed by the source topic, like the entry it names.
    """

    TOPIC: ClassVar[str] = topics.DEADLETTER
    type: Literal["message.redriven"] = "message.redriven"
    version: Literal[1] = 1
    data: RedrivenData

    @classmethod
    def key_of(cls, data: Any) -> str:
        return str(data.source_topic)


# --------------------------------------------------------------------------- one union per topic

GrantEvent = Annotated[
    GrantIssued | GrantAmended | GrantSuspended | GrantReinstated | CarveoutRevoked,
    Field(discriminator="type"),
]
AccessEvent = Annotated[AccessRecorded, Field(discriminator="type")]
BreachEvent = Annotated[ConditionBreached, Field(discriminator="type")]
NotificationEvent = Annotated[
    NotificationDelivered | NotificationFailed, Field(discriminator="type")
]
DeadLetterEvent = Annotated[MessageDeadLettered | MessageRedriven, Field(discriminator="type")]

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


def affected_grants(event: Any) -> list[str]:
    """The grants a grant event changes: every grant a ``carveout.revoked`` names, else one."""
    if isinstance(event, CarveoutRevoked):
        return list(event.data.grant_ids)
    return [event.data.grant_id]


def event_type(cls: type[Envelope]) -> str:
    return str(cls.model_fields["type"].default)


def current_version(cls: type[Envelope]) -> int:
    return int(cls.model_fields["version"].default)


EVENT_BY_TYPE: dict[str, type[Envelope]] = {event_type(cls): cls for cls in EVENT_CLASSES}
CURRENT_VERSION: dict[str, int] = {event_type(c): current_version(c) for c in EVENT_CLASSES}
