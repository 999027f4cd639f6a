"""The PostgreSQL server the figures on that store use: a database made for a run, dropped after.

``CARVEOUT_BENCH_POSTGRES_URL`` names a database to connect to as an administrator (one
allowed to create databases); by default the local server, trust authentication.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

ADMIN_URL = os.environ.get(
    "CARVEOUT_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def unavailable(admin_url: str = ADMIN_URL) -> str | None:
    """Why the server cannot be used, or ``None`` when it answers."""
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=3) as admin:
            admin.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PostgreSQL at {admin_url} does not answer ({exc}); CARVEOUT_BENCH_POSTGRES_URL"
    return None


@contextmanager
def database(label: str, admin_url: str = ADMIN_URL) -> Iterator[str]:
    """A fresh database's URL for the services (``postgresql://``), dropped on exit."""
    name = f"carveout_bench_{label}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=3) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=3) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
