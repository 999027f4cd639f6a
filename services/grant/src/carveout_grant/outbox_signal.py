"""Tell the replica that relays, at once, that another replica recorded an event.

Any grant replica records regulator actions; one relays them (the lease holder). Without
a signal the relay would see another replica's event only at its next poll, and the
regulator's call, which waits for its event to be published, would wait that long. On
PostgreSQL each appender raises ``NOTIFY`` in its transaction (delivered at commit) and
every replica ``LISTEN``\\s; SQLite has one replica, whose relay is woken in process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sqlalchemy import Engine, text
from sqlmodel import Session

log = logging.getLogger("carveout.grant.outbox")

CHANNEL = "carveout_grant_outbox"


def announce(session: Session) -> None:
    """Have this transaction, once committed, wake the relays of every replica."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"NOTIFY {CHANNEL}"))


def libpq_url(engine: Engine) -> str:
    """The engine's PostgreSQL URL as libpq reads it (without SQLAlchemy's driver name)."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


async def listen(engine: Engine, wake: Callable[[], None], retry_s: float = 1.0) -> None:
    """Call ``wake`` on each notification, for as long as the process runs; a lost
    connection is made again (the relay's own poll covers the gap)."""
    if engine.dialect.name != "postgresql":
        return
    import psycopg

    while True:
        try:
            async with await psycopg.AsyncConnection.connect(
                libpq_url(engine), autocommit=True
            ) as connection:
                await connection.execute(f"LISTEN {CHANNEL}")
                wake()  # anything recorded while not listening
                async for _ in connection.notifies():
                    wake()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("not listening for outbox events (%s); again in %.0fs", exc, retry_s)
            await asyncio.sleep(retry_s)
