"""Every consumer's decode path turns any input into an event or a PoisonMessage, nothing else.

Arbitrary bytes, arbitrary JSON, and each golden event with one field mutated: a decode that
raised anything else would be retried, not dead-lettered, and stop its partition.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carveout_contracts import PoisonMessage, codec, topics
from carveout_contracts.events import EVENT_BY_TYPE

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
CONSUMED = [topics.GRANTS, topics.ACCESS, topics.BREACHES, topics.NOTIFICATIONS, topics.DEADLETTER]
GOLDEN_EVENTS = {
    path.name: json.loads(path.read_text()) for path in sorted(GOLDEN.glob("*.v1.json"))
}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.sampled_from(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "", "\x00", "NaN"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)


def decodes_or_is_poison(topic: str, value: bytes) -> None:
    try:
        codec.decode(topic, value)
    except PoisonMessage as poison:
        reason = poison.reason
    else:
        return
    assert reason in ("bad_json", "unknown_type", "unsupported_version", "invalid")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(topic=st.sampled_from(CONSUMED), value=st.binary(max_size=512))
def test_arbitrary_bytes(topic: str, value: bytes) -> None:
    decodes_or_is_poison(topic, value)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(topic=st.sampled_from(CONSUMED), value=json_values)
def test_arbitrary_json(topic: str, value: Any) -> None:
    decodes_or_is_poison(topic, json.dumps(value).encode())


def mutate(event: Any, path: list[str | int], replacement: Any) -> Any:
    """``event`` with the value at ``path`` (as deep as it goes) replaced or removed."""
    if not path or not isinstance(event, dict | list):
        return replacement
    head, rest = path[0], path[1:]
    if isinstance(event, dict):
        keys = sorted(event)
        if not keys:
            return replacement
        key = keys[head % len(keys)] if isinstance(head, int) else head
        changed = dict(event)
        if replacement is REMOVE and not rest:
            changed.pop(key, None)
        else:
            changed[key] = mutate(event.get(key), rest, replacement)
        return changed
    if not event:
        return replacement
    index = head % len(event) if isinstance(head, int) else 0
    changed_list = list(event)
    changed_list[index] = mutate(event[index], rest, replacement)
    return changed_list


REMOVE = object()


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(GOLDEN_EVENTS)),
    path=st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=4),
    replacement=json_values | st.just(REMOVE),
)
def test_golden_events_with_a_field_mutated(
    name: str, path: list[str | int], replacement: Any
) -> None:
    event = GOLDEN_EVENTS[name]
    topic = EVENT_BY_TYPE[event["type"]].TOPIC
    changed = mutate(event, path, replacement)
    if changed is REMOVE:
        return
    decodes_or_is_poison(topic, json.dumps(changed, default=str).encode())
