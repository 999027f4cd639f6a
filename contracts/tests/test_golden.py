"""The golden examples in ``contracts/golden``: one per event type and version, byte-stable."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from carveout_contracts import codec
from carveout_contracts.conditions import CONDITION_KINDS
from carveout_contracts.events import (
    EVENT_BY_TYPE,
    EVENT_CLASSES,
    Envelope,
    current_version,
    event_type,
)

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden"
NAME = re.compile(r"^(?P<type>[a-z_]+\.[a-z_]+)\.v(?P<version>[1-9][0-9]*)\.json$")


def golden_path(cls: type[Envelope]) -> Path:
    return GOLDEN_DIR / f"{event_type(cls)}.v{current_version(cls)}.json"


def test_every_event_class_has_a_golden_file() -> None:
    missing = [golden_path(cls).name for cls in EVENT_CLASSES if not golden_path(cls).is_file()]
    assert not missing, f"add a golden example to contracts/golden for: {', '.join(missing)}"


def test_every_golden_file_belongs_to_a_current_event_class() -> None:
    expected = {golden_path(cls).name for cls in EVENT_CLASSES}
    stray = sorted(p.name for p in GOLDEN_DIR.iterdir() if p.name not in expected)
    assert not stray, f"golden files for no current event class: {', '.join(stray)}"


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=event_type)
def test_golden_file_parses_into_its_class(cls: type[Envelope]) -> None:
    text = golden_path(cls).read_bytes()
    event = codec.decode(cls.TOPIC, text)
    assert type(event) is cls
    assert event.type == event_type(cls)
    assert event.version == current_version(cls)
    match = NAME.match(golden_path(cls).name)
    assert match is not None
    assert match["type"] == event.type
    assert int(match["version"]) == event.version


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=event_type)
def test_golden_file_round_trips_byte_for_byte(cls: type[Envelope]) -> None:
    text = golden_path(cls).read_text(encoding="utf-8")
    event = codec.decode(cls.TOPIC, text.encode())
    assert event.model_dump_json(indent=2) + "\n" == text


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=event_type)
def test_golden_event_survives_the_wire_encoding(cls: type[Envelope]) -> None:
    event = codec.decode(cls.TOPIC, golden_path(cls).read_bytes())
    again = codec.decode(cls.TOPIC, codec.encode_value(event))
    assert again == event
    assert codec.encode_value(again) == codec.encode_value(event)


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=event_type)
def test_golden_file_is_explicit_and_consistent(cls: type[Envelope]) -> None:
    raw = json.loads(golden_path(cls).read_text())
    # Every envelope field is written out, so the example documents the whole contract.
    assert list(raw) == list(Envelope.model_fields)
    assert raw["occurred_at"].endswith("Z")
    event = codec.decode(cls.TOPIC, golden_path(cls).read_bytes())
    assert event.key == cls.key_of(event.data)


def test_golden_grant_uses_every_condition_kind() -> None:
    event = codec.decode(
        EVENT_BY_TYPE["grant.issued"].TOPIC,
        (GOLDEN_DIR / "grant.issued.v1.json").read_bytes(),
    )
    assert {c.kind for c in event.data.conditions} == set(CONDITION_KINDS)
    assert event.data.carveout_id == "co-mythos-2026"
    assert event.data.model_id == "mythos-preview"
    assert event.data.grantee.id == "org-netsec"
