"""Digests of a store: one fingerprint of everything a service derived from the log.

A digest is independent of row order and of the database (SQLite or PostgreSQL): each
row's covered columns are encoded as canonical JSON and hashed, and a table's digest is
the sum of its rows' hashes (a multiset hash), so no ``ORDER BY`` and no collation is
involved. Columns that record *when this copy* did something (processing times, publish
marks, delivery schedules) are left out: they differ between the live store and a
rebuilt one by nature, and every digest names the columns it covers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Engine, inspect

_MODULUS = 2**256


@dataclass(frozen=True)
class CoveredTable:
    """A table and the columns of it a digest covers."""

    name: str
    columns: tuple[str, ...]
    why_not: str = ""
    """Which columns are left out, and why (shown with the digest)."""


def _bytes_as_hex(value: Any) -> str:
    """Binary columns (a leaf hash) as hex: the same text whichever driver read them."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    raise TypeError(f"a {type(value).__name__} column cannot be digested")


def _hash_rows(rows: Iterable[Sequence[Any]]) -> tuple[int, int]:
    total = 0
    count = 0
    dumps = orjson.dumps
    sha = hashlib.sha256
    for row in rows:
        total += int.from_bytes(sha(dumps(list(row), default=_bytes_as_hex)).digest(), "big")
        count += 1
    return total % _MODULUS, count


def store_digest(
    engine: Engine,
    service: str,
    tables: Sequence[CoveredTable],
    *,
    normalise: Callable[[str, Sequence[Any]], Sequence[Any]] | None = None,
) -> dict[str, Any]:
    """The digest of ``tables`` in ``engine``'s database, as one JSON-ready object.

    ``normalise`` may rewrite a row (by table name) before hashing, for values whose
    representation depends on the database driver.
    """
    present = set(inspect(engine).get_table_names())
    per_table: dict[str, Any] = {}
    combined = hashlib.sha256(f"carveout/{service}/v1".encode())
    with engine.connect() as connection:
        for table in tables:
            if table.name in present:
                # Quoted: some column names (``window``) are reserved words in PostgreSQL.
                columns = ", ".join(f'"{c}"' for c in table.columns)
                result = connection.execution_options(
                    stream_results=True, yield_per=10_000
                ).exec_driver_sql(f"SELECT {columns} FROM {table.name}")
                rows: Iterable[Sequence[Any]] = result
                if normalise is not None:
                    rows = (normalise(table.name, row) for row in result)
                value, count = _hash_rows(rows)
            else:
                value, count = 0, 0
            table_digest = value.to_bytes(32, "big").hex()
            combined.update(f"{table.name}:{count}:{table_digest}\n".encode())
            per_table[table.name] = {
                "rows": count,
                "digest": table_digest,
                "columns": list(table.columns),
                **({"not_covered": table.why_not} if table.why_not else {}),
            }
    return {"service": service, "digest": combined.hexdigest(), "tables": per_table}
