"""The wire contract shared by every Carveout service: topics, events, conditions, codec and
upcasters, consistency tokens and limits. Pydantic and the standard library only."""

from typing import TYPE_CHECKING

from . import conditions, events, topics
from .codec import PoisonMessage, decode, encode_value, headers, upcaster

# The conditions module and the events package each list what they export in their own
# ``__all__``; the package exports all of it, so no name is listed twice.
from .conditions import *  # noqa: F403
from .consistency import BadConsistencyToken, decode_token, encode_token
from .events import *  # noqa: F403

__all__ = [
    "BadConsistencyToken",
    "PoisonMessage",
    "decode",
    "decode_token",
    "encode_token",
    "encode_value",
    "headers",
    "topics",
    "upcaster",
]
__all__ += conditions.__all__
if not TYPE_CHECKING:  # mypy is not shown the events package's ``__all__``: see there why
    __all__ += events.__all__
