"""The services' PostgreSQL databases: made and dropped for a run, read by the checks,
their connections terminated (a fault), and copied (a replay's starting point)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg

SERVICES = ("grant", "enforcement", "notification")
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


def answers(admin_url: str) -> str | None:
    """Why PostgreSQL at ``admin_url`` cannot be used, or ``None`` when it answers."""
    try:
        psycopg.connect(admin_url, autocommit=True, connect_timeout=3).close()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@dataclass
class Databases:
    """One fresh database per service (and the copies a run makes), dropped on close."""

    admin_url: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    names: dict[str, str] = field(default_factory=dict)
    extra: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return self.admin_url.rsplit("/", 1)[0]

    def url(self, name: str, driver: bool = True) -> str:
        base = self.base.replace("postgresql://", "postgresql+psycopg://") if driver else self.base
        return f"{base}/{name}"

    def service_url(self, service: str) -> str:
        return self.url(self.names[service])

    @contextmanager
    def admin(self) -> Iterator[psycopg.Connection[Any]]:
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            yield conn

    def create(self) -> None:
        with self.admin() as admin:
            for service in SERVICES:
                name = f"carveout_chaos_{service}_{self.run_id}"
                admin.execute(f'CREATE DATABASE "{name}"')
                self.names[service] = name

    def fresh(self, label: str) -> str:
        """A new empty database (dropped on close); its name."""
        name = f"carveout_chaos_{label}_{self.run_id}_{uuid.uuid4().hex[:6]}"
        with self.admin() as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        self.extra.append(name)
        return name

    def copy(self, service: str, label: str) -> str:
        """A consistent copy of ``service``'s live database (one snapshot, as
        ``pg_dump`` takes it), in a new database; its name."""
        name = self.fresh(label)
        dump = subprocess.run(
            ["pg_dump", "--no-owner", "--no-privileges", self.url(self.names[service], False)],
            capture_output=True,
            check=True,
        )
        subprocess.run(
            ["psql", "-q", "-v", "ON_ERROR_STOP=1", self.url(name, False)],
            input=dump.stdout,
            capture_output=True,
            check=True,
        )
        return name

    def drop(self, name: str) -> None:
        with self.admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self.extra:
            self.extra.remove(name)

    def close(self) -> None:
        for name in [*self.names.values(), *self.extra]:
            try:
                self.drop(name)
            except psycopg.Error:
                continue

    def terminate(self, services: Sequence[str]) -> int:
        """Terminate every connection the services have to their databases; how many."""
        names = [self.names[s] for s in services]
        with self.admin() as admin:
            rows = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = ANY(%s) AND pid <> pg_backend_pid()",
                (names,),
            ).fetchall()
        return sum(1 for (done,) in rows if done)

    def rows(self, service: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url(self.names[service], False), connect_timeout=5) as conn:
            return list(conn.execute(sql, params).fetchall())
