"""A shortened chaos run (``make chaos`` runs the full one): the same code, fewer faults.

Two replicas of each service on PostgreSQL and four partitions, under gateway traffic and
regulator actions; every kind of fault at least once; then every access judged once,
every breach counted once, one accepted delivery per (event, subscription), and every
store's digest equal to its replay.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from rich.console import Console

from .chaos.run import Settings, run, summary

pytestmark = [pytest.mark.broker, pytest.mark.postgres]

FAULTS = 12


@pytest.mark.timeout(420)
def test_a_short_chaos_run_keeps_every_effect_exact(postgres_server: str, tmp_path: Path) -> None:
    if os.environ.get("CARVEOUT_KAFKA_BOOTSTRAP"):
        pytest.skip("restarts the embedded broker; an external broker is configured")
    if not os.environ.get("CARVEOUT_CHAOS"):
        # Not yet part of every run: on this two-core machine the short run takes minutes,
        # and its breaches consumers fall behind after some faults (an open problem).
        pytest.skip("the shortened chaos run: set CARVEOUT_CHAOS=1 (or run make chaos)")
    seed = int(os.environ.get("CARVEOUT_CHAOS_SEED", "0")) or None
    console = Console(width=120, force_terminal=False)
    result = run(
        Settings(
            faults=FAULTS,
            seed=seed,
            pause_s=0.4,
            settle_s=120,
            admin_url=postgres_server,
            var_dir=tmp_path / "var",
        ),
        console,
    )
    summary(result, console)
    assert sum(result.faults.values()) == FAULTS
    failed = [c for c in result.checks if not c.ok]
    assert not failed, f"seed {result.seed}: " + "; ".join(
        f"{c.what}: expected {c.expected}, found {c.found}" for c in failed
    )
