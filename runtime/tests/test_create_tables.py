"""Stores made by an earlier release keep their rows: new nullable columns are added."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, text

from carveout_runtime.stores import create_tables, make_engine


def _metadata(*extra: Column[object]) -> MetaData:
    metadata = MetaData()
    Table("things", metadata, Column("id", String, primary_key=True), *extra)
    return metadata


def test_new_nullable_columns_are_added_and_rows_kept(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    assert create_tables(engine, _metadata()) == []
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO things (id) VALUES ('a')"))
    newer = _metadata(Column("note", String, nullable=True), Column("n", Integer, nullable=True))
    assert create_tables(engine, newer) == ["things.note", "things.n"]
    with engine.connect() as connection:
        assert connection.execute(text("SELECT id, note, n FROM things")).all() == [
            ("a", None, None)
        ]
    assert create_tables(engine, newer) == []  # once only


def test_a_new_required_column_is_a_clear_error(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    create_tables(engine, _metadata())
    with pytest.raises(RuntimeError, match="lacks the required column size"):
        create_tables(engine, _metadata(Column("size", Integer, nullable=False)))


def test_replicas_starting_together_on_a_new_postgresql_database_take_turns(
    postgres_url: str,
) -> None:
    """Six stores made at once on one new database: one creates the tables, none fails."""
    import threading

    url = postgres_url.replace("postgresql://", "postgresql+psycopg://")
    metadata = _metadata(Column("note", String, nullable=True))
    errors: list[Exception] = []

    def start() -> None:
        try:
            create_tables(make_engine(url), metadata)
        except Exception as exc:
            errors.append(exc)

    replicas = [threading.Thread(target=start) for _ in range(6)]
    for replica in replicas:
        replica.start()
    for replica in replicas:
        replica.join(30)
    assert errors == []
