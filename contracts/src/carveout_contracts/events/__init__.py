"""Every event on the wire: one envelope, an explicit ``type`` and ``version``, typed ``data``.

The ``type`` string and ``version`` number are part of the contract and are written out
literally here; they are never derived from a class or module path. A breaking change to
an event's ``data`` gets a new ``version`` and an upcaster in :mod:`carveout_contracts.codec`.

The events of each topic are in a module of their own (``grants``, ``access``,
``breaches``, ``notifications``, ``deadletter``, ``acks``, ``checkpoints``), each with the
topic's discriminated union and an ``__all__`` of what it exports; this module gathers
them. A new event goes into its topic's union: ``EVENT_CLASSES``, and so the schemas and
golden checks, follow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, get_args

from .. import topics
from . import access, acks, breaches, checkpoints, deadletter, grants, notifications

# Each topic module lists what it exports in its own ``__all__``; this package exports all of
# it, so no name is listed twice.
from .access import *  # noqa: F403
from .acks import *  # noqa: F403
from .breaches import *  # noqa: F403
from .checkpoints import *  # noqa: F403
from .deadletter import *  # noqa: F403
from .envelope import Envelope as Envelope
from .grants import *  # noqa: F403
from .notifications import *  # noqa: F403

TOPIC_UNIONS: dict[str, Any] = {
    topics.GRANTS: grants.GrantEvent,
    topics.ACCESS: access.AccessEvent,
    topics.BREACHES: breaches.BreachEvent,
    topics.NOTIFICATIONS: notifications.NotificationEvent,
    topics.DEADLETTER: deadletter.DeadLetterEvent,
    topics.ACKS: acks.AckEvent,
    topics.CHECKPOINTS: checkpoints.CheckpointEvent,
}


def _members(union: Any) -> tuple[type[Envelope], ...]:
    """The event classes a topic's ``Annotated[A | B, Field(discriminator="type")]`` names."""
    members = get_args(union)[0]
    return get_args(members) or (members,)


EVENT_CLASSES: tuple[type[Envelope], ...] = tuple(
    cls for union in TOPIC_UNIONS.values() for cls in _members(union)
)
"""Every current event class, topic by topic in the order of ``TOPIC_UNIONS``."""


def event_type(cls: type[Envelope]) -> str:
    return str(cls.model_fields["type"].default)


def current_version(cls: type[Envelope]) -> int:
    return int(cls.model_fields["version"].default)


EVENT_BY_TYPE: dict[str, type[Envelope]] = {event_type(cls): cls for cls in EVENT_CLASSES}
CURRENT_VERSION: dict[str, int] = {event_type(c): current_version(c) for c in EVENT_CLASSES}


if not TYPE_CHECKING:
    # mypy reads only a literal ``__all__`` and takes every name missing from it for private,
    # so the topic modules' names would not reach the package root by its
    # ``from .events import *``. With no ``__all__`` in sight, mypy exports what the star
    # imports bring and what this module defines (``Envelope`` by its redundant alias);
    # Python gets the exact list.
    __all__ = [
        "CURRENT_VERSION",
        "EVENT_BY_TYPE",
        "EVENT_CLASSES",
        "TOPIC_UNIONS",
        "Envelope",
        "current_version",
        "event_type",
        *access.__all__,
        *acks.__all__,
        *breaches.__all__,
        *checkpoints.__all__,
        *deadletter.__all__,
        *grants.__all__,
        *notifications.__all__,
    ]
