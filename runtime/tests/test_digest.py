"""Store digests (``carveout_runtime.digest``): order-free, per table, the same on SQLite
and PostgreSQL, and blind to the columns they do not cover."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text

from carveout_runtime.digest import CoveredTable, store_digest
from carveout_runtime.stores import make_engine

TABLES = (
    CoveredTable("grants", ("grant_id", "status", "version", "document")),
    CoveredTable(
        "decisions",
        ("access_event_id", "decision", "units", "occurred_at"),
        why_not="judged_at (when this copy judged the access)",
    ),
)

SCHEMA = (
    "CREATE TABLE grants (grant_id VARCHAR PRIMARY KEY, status VARCHAR NOT NULL, "
    "version INTEGER NOT NULL, document VARCHAR NOT NULL, updated_at VARCHAR)",
    "CREATE TABLE decisions (access_event_id VARCHAR PRIMARY KEY, decision VARCHAR NOT NULL, "
    "units BIGINT NOT NULL, occurred_at BIGINT NOT NULL, judged_at BIGINT, "
    "violations VARCHAR)",
)

GRANTS: list[dict[str, Any]] = [
    {
        "grant_id": f"grt_{n}",
        "status": ["active", "suspended", "revoked"][n % 3],
        "version": n + 1,
        # JSON documents as the stores keep them: text, with unicode and nesting.
        "document": json.dumps(
            {"grant_id": f"grt_{n}", "grantee": {"name": "Société Générale ü"}, "n": n},
            ensure_ascii=False,
        ),
        "updated_at": f"2026-06-28T00:00:{n:02d}Z",
    }
    for n in range(6)
]
DECISIONS: list[dict[str, Any]] = [
    {
        "access_event_id": f"7c0b6c1e-3c55-4d1a-9f0e-{n:012d}",
        "decision": "deny" if n % 4 == 0 else "allow",
        "units": 2**40 + n,  # beyond 32 bits
        "occurred_at": 1_782_000_000_000_000 + n,
        "judged_at": 1_790_000_000_000_000 + n,
        "violations": json.dumps([{"kind": "no_active_grant", "actual": "unknown"}] * (n % 2)),
    }
    for n in range(40)
]


def fill(
    engine: Engine,
    grants: Sequence[dict[str, Any]] = GRANTS,
    decisions: Sequence[dict[str, Any]] = DECISIONS,
    *,
    tables: Sequence[str] = ("grants", "decisions"),
) -> Engine:
    with engine.begin() as connection:
        for statement in SCHEMA:
            if any(f"TABLE {t} " in statement for t in tables):
                connection.execute(text(statement))
        if "grants" in tables:
            for row in grants:
                connection.execute(
                    text(
                        "INSERT INTO grants VALUES "
                        "(:grant_id, :status, :version, :document, :updated_at)"
                    ),
                    row,
                )
        if "decisions" in tables:
            for row in decisions:
                connection.execute(
                    text(
                        "INSERT INTO decisions VALUES (:access_event_id, :decision, :units, "
                        ":occurred_at, :judged_at, :violations)"
                    ),
                    row,
                )
    return engine


def changed(rows: Sequence[dict[str, Any]], index: int, **values: Any) -> list[dict[str, Any]]:
    out = [dict(r) for r in rows]
    out[index].update(values)
    return out


@pytest.fixture
def engines(tmp_path: Path) -> Iterator[Any]:
    """Fresh SQLite databases, disposed after the test."""
    made: list[Engine] = []

    def make(name: str) -> Engine:
        engine = create_engine(f"sqlite:///{tmp_path}/{name}.db")
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.dispose()


def digest(engine: Engine) -> dict[str, Any]:
    return store_digest(engine, "test", TABLES)


# --------------------------------------------------------------------------- SQLite


def test_the_same_rows_in_any_order_give_the_same_digest(engines: Any) -> None:
    forward = digest(fill(engines("a")))
    backward = digest(fill(engines("b"), GRANTS[::-1], DECISIONS[::-1]))
    shuffled = digest(fill(engines("c"), GRANTS[3:] + GRANTS[:3], DECISIONS[1::2] + DECISIONS[::2]))

    assert forward == backward == shuffled
    assert forward["service"] == "test"
    assert forward["tables"]["grants"]["rows"] == len(GRANTS)
    assert forward["tables"]["decisions"]["rows"] == len(DECISIONS)
    assert forward["tables"]["decisions"]["columns"] == list(TABLES[1].columns)
    assert forward["tables"]["decisions"]["not_covered"] == TABLES[1].why_not
    assert "not_covered" not in forward["tables"]["grants"]


@pytest.mark.parametrize(
    ("table", "column", "new"),
    [
        ("grants", "status", "expired"),
        ("grants", "version", 99),
        ("grants", "document", json.dumps({"grant_id": "grt_2", "n": 3})),
        ("decisions", "decision", "allow"),
        ("decisions", "units", 2**40 + 1000),
        ("decisions", "occurred_at", 1_782_000_000_000_001),
    ],
)
def test_a_changed_covered_value_changes_that_tables_digest_only(
    engines: Any, table: str, column: str, new: Any
) -> None:
    before = digest(fill(engines("before")))
    grants = changed(GRANTS, 2, **{column: new}) if table == "grants" else GRANTS
    decisions = changed(DECISIONS, 8, **{column: new}) if table == "decisions" else DECISIONS
    after = digest(fill(engines("after"), grants, decisions))

    assert after["digest"] != before["digest"]
    other = "decisions" if table == "grants" else "grants"
    assert after["tables"][table]["digest"] != before["tables"][table]["digest"]
    assert after["tables"][other] == before["tables"][other]
    assert after["tables"][table]["rows"] == before["tables"][table]["rows"]


def test_swapping_values_between_rows_changes_the_digest(engines: Any) -> None:
    """Rows are hashed whole: the same column values in other rows are another store."""
    before = digest(fill(engines("before")))
    swapped = changed(changed(GRANTS, 0, status=GRANTS[1]["status"]), 1, status=GRANTS[0]["status"])
    after = digest(fill(engines("after"), swapped))

    assert after["tables"]["grants"]["digest"] != before["tables"]["grants"]["digest"]


def test_a_duplicated_row_counts(engines: Any) -> None:
    """A multiset: a row twice is not the row once (no unique key here to stop it)."""
    grants_once = digest(fill(engines("once"), tables=("grants",)))
    engine = fill(engines("twice"), tables=("grants",))
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE grants RENAME TO old_grants"))
        connection.execute(
            text(
                "CREATE TABLE grants (grant_id VARCHAR, status VARCHAR, version INTEGER, "
                "document VARCHAR, updated_at VARCHAR)"
            )
        )
        connection.execute(text("INSERT INTO grants SELECT * FROM old_grants"))
        connection.execute(text("INSERT INTO grants SELECT * FROM old_grants WHERE version = 1"))
    twice = digest(engine)

    assert twice["tables"]["grants"]["rows"] == grants_once["tables"]["grants"]["rows"] + 1
    assert twice["tables"]["grants"]["digest"] != grants_once["tables"]["grants"]["digest"]


def test_uncovered_columns_change_nothing(engines: Any) -> None:
    before = digest(fill(engines("before")))
    grants = [dict(g, updated_at="2030-01-01T00:00:00Z") for g in GRANTS]
    decisions = [dict(d, judged_at=d["judged_at"] + 12345, violations="[]") for d in DECISIONS]
    after = digest(fill(engines("after"), grants, decisions))

    assert after == before


def test_a_missing_table_digests_as_no_rows(engines: Any) -> None:
    partial = digest(fill(engines("partial"), tables=("grants",)))
    empty_decisions = digest(fill(engines("empty"), decisions=[]))
    whole = digest(fill(engines("whole")))

    assert partial["tables"]["decisions"]["rows"] == 0
    assert partial["tables"]["decisions"]["digest"] == "0" * 64
    assert partial["tables"]["grants"] == whole["tables"]["grants"]
    assert partial == empty_decisions  # a missing table and an empty one are the same
    assert partial["digest"] != whole["digest"]

    nothing = digest(engines("nothing"))
    assert all(t["rows"] == 0 for t in nothing["tables"].values())
    assert nothing["digest"] != partial["digest"]


def test_the_service_name_is_part_of_the_digest(engines: Any) -> None:
    engine = fill(engines("a"))
    assert store_digest(engine, "grant", TABLES)["digest"] != digest(engine)["digest"]


def test_normalise_rewrites_rows_before_hashing(engines: Any) -> None:
    engine = fill(engines("a"))
    plain = digest(engine)

    def upper_status(table: str, row: Sequence[Any]) -> Sequence[Any]:
        if table != "grants":
            return row
        return [row[0], str(row[1]).upper(), *row[2:]]

    shouted = store_digest(engine, "test", TABLES, normalise=upper_status)
    assert shouted["tables"]["decisions"] == plain["tables"]["decisions"]
    assert shouted["tables"]["grants"]["digest"] != plain["tables"]["grants"]["digest"]

    upper = fill(engines("b"), [dict(g, status=g["status"].upper()) for g in GRANTS])
    assert digest(upper)["tables"]["grants"] == shouted["tables"]["grants"]


# --------------------------------------------------------------------------- PostgreSQL


@pytest.mark.postgres
def test_the_same_rows_give_the_same_digest_on_sqlite_and_postgresql(
    engines: Any, postgres_url: str
) -> None:
    sqlite = digest(fill(engines("a")))
    engine = make_engine(postgres_url)
    try:
        postgresql = digest(fill(engine, GRANTS[::-1], DECISIONS[::-1]))
        assert postgresql == sqlite

        with engine.begin() as connection:
            connection.execute(
                text("UPDATE decisions SET units = units + 1 WHERE access_event_id = :id"),
                {"id": DECISIONS[5]["access_event_id"]},
            )
        assert digest(engine)["tables"]["decisions"] != sqlite["tables"]["decisions"]
        assert digest(engine)["tables"]["grants"] == sqlite["tables"]["grants"]
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_missing_table_on_postgresql_digests_as_on_sqlite(
    engines: Any, postgres_url: str
) -> None:
    engine = make_engine(postgres_url)
    try:
        assert digest(fill(engine, tables=("grants",))) == digest(
            fill(engines("a"), tables=("grants",))
        )
    finally:
        engine.dispose()


def _leaves(engine: Engine, blob: str) -> Engine:
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS leaves"))
        connection.execute(text(f"CREATE TABLE leaves (leaf_index BIGINT, leaf_hash {blob})"))
        for index in range(3):
            connection.execute(
                text("INSERT INTO leaves VALUES (:i, :h)"),
                {"i": index, "h": bytes([index]) * 32},
            )
    return engine


LEAVES = (CoveredTable("leaves", ("leaf_index", "leaf_hash")),)


def test_binary_columns_are_digested_as_their_hex(engines: Any) -> None:
    found = store_digest(_leaves(engines("a"), "BLOB"), "enforcement", LEAVES)
    assert found["tables"]["leaves"]["rows"] == 3


@pytest.mark.postgres
def test_binary_columns_digest_alike_on_sqlite_and_postgresql(
    engines: Any, postgres_url: str
) -> None:
    sqlite = store_digest(_leaves(engines("a"), "BLOB"), "enforcement", LEAVES)
    engine = make_engine(postgres_url)
    try:
        assert store_digest(_leaves(engine, "BYTEA"), "enforcement", LEAVES) == sqlite
    finally:
        engine.dispose()
