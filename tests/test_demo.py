"""``carveout demo`` against a running system: the whole story, end to end."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .system import System

pytestmark = pytest.mark.broker


def test_the_demo_tells_the_whole_story(system: System) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "carveout_ops", "demo", "--events", "3000"],
        env={**system.env(), "CARVEOUT_KAFKA_BOOTSTRAP": system.bootstrap},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "3,000 accesses judged and recorded" in out
    assert "violated: countries (KP), embargo (KP)" in out
    assert "grant revoked by its breach policy" in out
    assert "decision: deny (revoked)" in out
    assert "carveout.revoked" in out
