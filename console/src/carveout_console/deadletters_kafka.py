"""Dead letters have no service API: they are read from, and re-driven through, the
dead-letter topic with the same code as ``carveout dlq``. The console checks the role
itself here (only a regulator re-drives), since no service does."""

from __future__ import annotations

from collections.abc import Sequence

from carveout_ops.dlq import DeadLetters, DlqError, Entry, Redriven, find, load, redrive


class DeadLetterDesk:
    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    async def entries(self) -> DeadLetters:
        return await load(self.bootstrap)

    async def redrive(self, entry_id: str, by: str) -> list[Redriven]:
        """Re-drive one entry (its id or a unique prefix); :class:`DlqError` says why not."""
        found = await load(self.bootstrap)
        chosen: Sequence[Entry] = find(found.entries, [entry_id])
        return await redrive(self.bootstrap, chosen, by=by)


__all__ = ["DeadLetterDesk", "DeadLetters", "DlqError", "Entry", "Redriven"]
