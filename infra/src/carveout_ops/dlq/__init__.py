"""``carveout dlq list|redrive``: inspect the dead-letter topic and re-drive its entries.

An *entry* is a ``message.dead_lettered`` event: the original bytes a consumer could not
process, with its key and headers, the reason, the error, the source topic, partition
and offset, and the service that set it aside. Its id is the event's ``event_id``.

Re-driving publishes the original bytes again to the source topic, with the original
key and headers (plus ``carveout-redriven-from: <entry id>``), and records the fact in
the log itself: a ``message.redriven`` event on ``carveout.deadletter`` naming the entry
and where the copy landed. No state is kept anywhere else, so every operator sees the
same history.

Re-driving twice doubles nothing: every consumer skips an event whose ``event_id`` it
has processed. A record that is still poison is simply dead-lettered again, as a new
entry.

The package, one module per job: :mod:`.model` (entries and their state, pure
functions over decoded events), :mod:`.kafka` (loading the topic, reading a truncated
entry's original back, re-driving), :mod:`.render` (tables, lines and ``--json``) and
:mod:`.commands` (the Typer group, :data:`app`, that cli.py adds as ``carveout dlq``).
"""

from __future__ import annotations

from .commands import app
from .kafka import PRODUCER, SOURCE_READ_S, load, operator, read_original, redrive
from .model import (
    REASONS,
    REDRIVE_HEADER,
    DeadLetters,
    DlqError,
    Entry,
    Redrive,
    Redriven,
    find,
    fold,
    select,
)
from .render import entries_table

__all__ = [
    "PRODUCER",
    "REASONS",
    "REDRIVE_HEADER",
    "SOURCE_READ_S",
    "DeadLetters",
    "DlqError",
    "Entry",
    "Redrive",
    "Redriven",
    "app",
    "entries_table",
    "find",
    "fold",
    "load",
    "operator",
    "read_original",
    "redrive",
    "select",
]
