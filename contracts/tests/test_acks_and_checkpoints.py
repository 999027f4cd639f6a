"""``carveout.acks`` and ``carveout.checkpoints``: what bounds their fields."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from carveout_contracts import PoisonMessage, codec, limits, topics

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def golden(name: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads((GOLDEN / f"{name}.v1.json").read_text())
    return value


def decode(topic: str, event: dict[str, Any]) -> Any:
    return codec.decode(topic, json.dumps(event).encode())


def test_a_heartbeat_reports_positions_by_partition() -> None:
    event = decode(topics.ACKS, golden("enforcement.heartbeat"))
    assert event.data.grants_positions == {0: 42, 1: 17}
    assert event.key == event.data.enforcer_id


def test_a_heartbeat_with_too_many_partitions_is_invalid() -> None:
    event = golden("enforcement.heartbeat")
    event["data"]["grants_positions"] = {str(p): 0 for p in range(limits.MAX_PARTITIONS + 1)}
    with pytest.raises(PoisonMessage) as refused:
        decode(topics.ACKS, event)
    assert refused.value.reason == "invalid"
    assert "grants_positions" in refused.value.error


@pytest.mark.parametrize("position", [-1, "x"])
def test_a_heartbeat_position_is_a_non_negative_offset(position: Any) -> None:
    event = golden("enforcement.heartbeat")
    event["data"]["grants_positions"] = {"0": position}
    with pytest.raises(PoisonMessage):
        decode(topics.ACKS, event)


def test_an_applied_ack_is_keyed_by_its_grant() -> None:
    event = decode(topics.ACKS, golden("enforcement.applied"))
    assert event.key == event.data.grant_id


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("root", "not base64"),
        ("root", "A" * 44),  # 44 characters but no padding: not a 32-byte hash
        ("note", "x" * (limits.MAX_NOTE_BYTES + 1)),
        ("size", -1),
    ],
)
def test_a_checkpoint_field_out_of_bounds_is_invalid(field: str, value: Any) -> None:
    event = golden("checkpoint.signed")
    event["data"][field] = value
    with pytest.raises(PoisonMessage) as refused:
        decode(topics.CHECKPOINTS, event)
    assert field in refused.value.error
