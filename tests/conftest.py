from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .system import System

DEMO_GRANT = Path(__file__).resolve().parents[1] / "examples" / "demo-grant.json"


@pytest.fixture
def demo_grant() -> dict[str, Any]:
    grant: dict[str, Any] = json.loads(DEMO_GRANT.read_text())
    return grant


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """The whole system, started by ``carveout up`` on free ports, for one test module."""
    running = System(
        tmp_path_factory.mktemp("var"),
        external_bootstrap=os.environ.get("CARVEOUT_KAFKA_BOOTSTRAP"),
    )
    running.start()
    try:
        yield running
    finally:
        running.stop()
