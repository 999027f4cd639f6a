"""The breach policy's revocation continues the trace of the breach that tripped it
(tracing off: no spans, the breach's ``traceparent`` is passed on as it came)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from carveout_contracts import topics

from .conftest import REGULATOR, GrantHarness

GOLDEN = Path(__file__).resolve().parents[4] / "contracts" / "golden"


def breach(grant_id: str, happened: datetime) -> bytes:
    event: dict[str, Any] = json.loads((GOLDEN / "condition.breached.v1.json").read_text())
    at = happened.isoformat().replace("+00:00", "Z")
    event.update(event_id=str(uuid.uuid4()), key=grant_id, occurred_at=at)
    event["data"].update(
        grant_id=grant_id,
        grant_version=1,
        breach_id=f"brc_{uuid.uuid4().hex[:16]}",
        access_event_id=str(uuid.uuid4()),
        access_occurred_at=at,
    )
    return json.dumps(event).encode()


async def test_a_policy_revocation_continues_the_trace_of_the_breach_that_tripped_it(
    grant_service: GrantHarness, demo_body: dict[str, Any]
) -> None:
    issued = await grant_service.client.post("/v1/grants", json=demo_body, headers=REGULATOR)
    assert issued.status_code == 201, issued.text
    grant_id = issued.json()["grant_id"]
    traces = [f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01" for _ in range(3)]
    now = datetime.now(UTC)
    for i, traceparent in enumerate(traces):  # revoke_after_critical: 3
        await grant_service.broker.publish(
            breach(grant_id, now - timedelta(seconds=3 - i)),
            topics.BREACHES,
            key=grant_id.encode(),
            headers={"content-type": "application/json", "traceparent": traceparent},
        )

    async def revocation() -> Any:
        while True:
            for record in grant_service.published:
                if json.loads(record.value)["type"] == "carveout.revoked":
                    return record
            await asyncio.sleep(0.01)

    record = await asyncio.wait_for(revocation(), 5)
    assert record.headers["traceparent"] == traces[-1]
