"""A grant change whose store write failed is written with the redelivered event.

Memory is updated first, so the redelivered event changes memory no further: the
projector must still remember what the store lacks, or a revocation would survive only
until the next restart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from carveout_contracts import codec, topics
from carveout_enforcement.handlers.grants import GrantIndex, GrantProjector
from carveout_enforcement.store import EnforcementStore
from carveout_runtime.inbound import Inbound
from carveout_runtime.stores import make_engine

GOLDEN = Path(__file__).resolve().parents[4] / "contracts" / "golden"


def golden(event_type: str) -> Any:
    raw = (GOLDEN / f"{event_type}.v1.json").read_text()
    return codec.decode(topics.GRANTS, json.dumps(json.loads(raw)).encode())


class FlakyStore(EnforcementStore):
    failures = 0

    def save_grants(self, views: Any, **kwargs: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError("database is locked")
        super().save_grants(views, **kwargs)


async def test_a_failed_write_is_made_good_by_the_redelivered_event(tmp_path: Path) -> None:
    store = FlakyStore(make_engine(f"sqlite:///{tmp_path / 'enforcement.db'}"))
    projector = GrantProjector(store, GrantIndex(), retry_attempts=1)
    issued = golden("grant.issued")
    await projector(issued, Inbound.at(None))
    suspended = golden("grant.suspended")
    store.failures = 1
    with pytest.raises(OSError, match="database is locked"):
        await projector(suspended, Inbound.at(None))
    assert not store.is_processed(str(suspended.event_id))
    await projector(suspended, Inbound.at(None))  # redelivered: memory has it already
    [view] = list(store.load_grants())
    assert view.status == "suspended"
    assert view.version == suspended.data.version
    assert store.is_processed(str(suspended.event_id))
