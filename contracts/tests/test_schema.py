"""The checked-in JSON Schemas in ``contracts/schema`` match the models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carveout_contracts import topics
from carveout_contracts.events import EVENT_CLASSES, current_version, event_type
from carveout_contracts.schema import main, render, schemas

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schema"
STALE = "contracts/schema is out of date with the models: run `make schema`"


def test_expected_schema_names() -> None:
    expected = {f"{event_type(c)}.v{current_version(c)}.json" for c in EVENT_CLASSES}
    expected |= {f"topic.{t}.json" for t in topics.ALL_TOPICS}
    assert set(schemas()) == expected


@pytest.mark.parametrize("name", sorted(schemas()))
def test_checked_in_schema_is_up_to_date(name: str) -> None:
    path = SCHEMA_DIR / name
    assert path.is_file(), f"{path.name} is missing; {STALE}"
    assert path.read_text() == render(schemas()[name]), f"{path.name} differs; {STALE}"


def test_no_stale_schema_files() -> None:
    stale = sorted(p.name for p in SCHEMA_DIR.iterdir() if p.name not in schemas())
    assert not stale, f"schema files for no current event or topic: {stale}; {STALE}"


def test_render_is_stable_json() -> None:
    schema = {"b": 1, "a": {"d": [1, 2], "c": None}}
    text = render(schema)
    assert text.endswith("}\n")
    assert json.loads(text) == schema
    assert text.index('"a"') < text.index('"b"')
    assert render(json.loads(text)) == text


def test_main_writes_every_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "out")]) == 0
    written = {p.name: p.read_text() for p in (tmp_path / "out").iterdir()}
    assert written == {name: render(schema) for name, schema in schemas().items()}
    assert f"wrote {len(written)} schemas" in capsys.readouterr().out
