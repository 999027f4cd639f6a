"""Carveout's topics by their short names (``grants``) as well as their full names
(``carveout.grants``), for the commands that take or show a topic."""

from __future__ import annotations

from carveout_contracts import topics

SHORT_NAMES: dict[str, str] = {topic.split(".", 1)[1]: topic for topic in topics.ALL_TOPICS}
"""``grants`` -> ``carveout.grants``, and so on for every Carveout topic."""


class UnknownTopic(ValueError):
    """A name that is neither a Carveout topic's short name nor a full topic name."""


def resolve_topic(name: str) -> str:
    """A topic's full name from its short (``grants``) or full (``carveout.grants``) name.

    Any other name with a dot in it is taken as a full topic name as it stands.
    """
    if name in SHORT_NAMES:
        return SHORT_NAMES[name]
    if "." in name:
        return name
    known = ", ".join(f"{short} ({full})" for short, full in SHORT_NAMES.items())
    raise UnknownTopic(f"unknown topic {name!r}; the topics are: {known}")


def short_name(topic: str) -> str:
    """A Carveout topic's short name; any other topic's name as it stands."""
    return next((short for short, full in SHORT_NAMES.items() if full == topic), topic)
