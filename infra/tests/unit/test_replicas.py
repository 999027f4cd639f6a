"""``carveout up --replicas N``: where each replica listens, and when N is refused."""

from __future__ import annotations

import pytest

from carveout_ops.supervisor import MAX_REPLICAS, replicas_refusal
from carveout_ops.system import address

SERVICES = ("GRANT", "ENFORCEMENT", "NOTIFICATION")


def test_replica_i_listens_on_the_port_plus_ten_times_i(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CARVEOUT_ENFORCEMENT_URL", raising=False)
    monkeypatch.delenv("CARVEOUT_ENFORCEMENT_PORT", raising=False)
    assert [address("enforcement", i).port for i in range(3)] == [8082, 8092, 8102]
    monkeypatch.setenv("CARVEOUT_ENFORCEMENT_PORT", "9000")
    assert address("enforcement", 2).port == 9020


def test_one_replica_runs_on_sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SERVICES:
        monkeypatch.delenv(f"CARVEOUT_{name}_DATABASE_URL", raising=False)
    assert replicas_refusal(1) is None


def test_replicas_on_sqlite_are_refused_naming_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CARVEOUT_GRANT_DATABASE_URL", "postgresql+psycopg://127.0.0.1/grant")
    for name in ("ENFORCEMENT", "NOTIFICATION"):
        monkeypatch.delenv(f"CARVEOUT_{name}_DATABASE_URL", raising=False)
    refusal = replicas_refusal(2)
    assert refusal is not None
    assert "needs PostgreSQL" in refusal
    assert "CARVEOUT_ENFORCEMENT_DATABASE_URL" in refusal
    assert "CARVEOUT_NOTIFICATION_DATABASE_URL" in refusal
    assert "CARVEOUT_GRANT_DATABASE_URL" not in refusal


def test_replicas_on_postgresql_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SERVICES:
        monkeypatch.setenv(f"CARVEOUT_{name}_DATABASE_URL", f"postgresql+psycopg://h/{name}")
    assert replicas_refusal(2) is None


@pytest.mark.parametrize("replicas", [0, -1, MAX_REPLICAS + 1])
def test_a_count_out_of_range_is_refused(replicas: int) -> None:
    assert (
        replicas_refusal(replicas) == f"--replicas must be from 1 to {MAX_REPLICAS}, not {replicas}"
    )
