"""Write the JSON Schema of every event to ``contracts/schema`` (``make schema``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from .events import EVENT_CLASSES, TOPIC_UNIONS, current_version, event_type


def schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema, for each event version and each topic's union."""
    out: dict[str, dict[str, Any]] = {}
    for cls in EVENT_CLASSES:
        out[f"{event_type(cls)}.v{current_version(cls)}.json"] = cls.model_json_schema()
    for topic, union in TOPIC_UNIONS.items():
        out[f"topic.{topic}.json"] = TypeAdapter(union).json_schema()
    return out


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else Path("contracts/schema")
    target.mkdir(parents=True, exist_ok=True)
    for name, schema in schemas().items():
        (target / name).write_text(render(schema))
    print(f"wrote {len(schemas())} schemas to {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
