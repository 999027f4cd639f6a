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
def system(
    tmp_path_factory: pytest.TempPathFactory, kafka_container_bootstrap: str | None
) -> Iterator[System]:
    """The whole system, started by ``carveout up`` on free ports, for one test module.

    Its broker: ``CARVEOUT_KAFKA_BOOTSTRAP``, else the session's Kafka container
    (``CARVEOUT_TEST_CONTAINERS=1``), else the embedded broker ``carveout up`` starts.
    """
    running = System(
        tmp_path_factory.mktemp("var"),
        external_bootstrap=os.environ.get("CARVEOUT_KAFKA_BOOTSTRAP") or kafka_container_bootstrap,
    )
    running.start()
    try:
        yield running
    finally:
        running.stop()
