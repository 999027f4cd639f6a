"""The outbox never holds an event that cannot be published (DESIGN §10): an action whose
event would exceed the record limit is refused (413) before anything is written, and the
actions after it are relayed as usual."""

from __future__ import annotations

import copy
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from carveout_contracts import decode, limits, topics

from .conftest import REGULATOR, GrantHarness

Starter = Callable[..., AbstractAsyncContextManager[GrantHarness]]
BIG_BODIES = {"http_body_max_bytes": 8 * limits.MIB}
"""Bodies this large are let through the HTTP edge, so that the event limit is what refuses."""


def big_conditions() -> list[dict[str, Any]]:
    """Within every field limit (64 conditions of 256 values), about 700 KB encoded."""
    return [
        {
            "id": f"purpose-{n}",
            "kind": "purposes",
            "allow": [f"purpose-{n}-{v:03d}-" + "x" * 30 for v in range(limits.MAX_LIST_VALUES)],
        }
        for n in range(limits.MAX_CONDITIONS)
    ]


async def test_a_grant_whose_event_is_over_the_record_limit_is_413_and_nothing_is_written(
    start_grant: Starter, demo_body: dict[str, Any]
) -> None:
    async with start_grant(**BIG_BODIES) as harness:
        store = harness.service.store
        kept = await harness.client.post("/v1/grants", json=demo_body, headers=REGULATOR)
        assert kept.status_code == 201, kept.text
        before = store.counts()

        big = {**copy.deepcopy(demo_body), "conditions": big_conditions()}
        refused = await harness.client.post("/v1/grants", json=big, headers=REGULATOR)
        assert refused.status_code == 413, refused.text
        answer = refused.json()
        assert answer["error"] == "too_large"
        assert "524288-byte limit" in answer["message"]
        assert "CARVEOUT_RECORD_MAX_BYTES" in answer["message"]
        assert store.counts() == before  # no grant, no outbox row

        # the next regulator action is recorded and relayed as ever
        grant_id = kept.json()["grant_id"]
        revoked = await harness.client.post(
            f"/v1/grants/{grant_id}/revoke", json={"reason": "breach"}, headers=REGULATOR
        )
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["published"] is True
        assert [decode(topics.GRANTS, r.value).type for r in harness.published] == [
            "grant.issued",
            "carveout.revoked",
        ]


async def test_an_amendment_over_the_record_limit_is_413_and_the_grant_is_unchanged(
    start_grant: Starter, demo_body: dict[str, Any]
) -> None:
    async with start_grant(**BIG_BODIES) as harness:
        issued = await harness.client.post("/v1/grants", json=demo_body, headers=REGULATOR)
        grant_id = issued.json()["grant_id"]
        amendment = {
            "valid_from": demo_body["valid_from"],
            "valid_until": demo_body["valid_until"],
            "conditions": big_conditions(),
            "breach_policy": demo_body["breach_policy"],
            "reason": "wider",
        }
        refused = await harness.client.post(
            f"/v1/grants/{grant_id}/amend", json=amendment, headers=REGULATOR
        )
        assert refused.status_code == 413, refused.text
        assert "grant.amended" in refused.json()["message"]
        grant = (await harness.client.get(f"/v1/grants/{grant_id}", headers=REGULATOR)).json()
        assert grant["version"] == 1


async def test_the_limit_is_the_configured_record_size(
    start_grant: Starter, demo_body: dict[str, Any]
) -> None:
    """A smaller CARVEOUT_RECORD_MAX_BYTES refuses a grant the default accepts."""
    body = {**copy.deepcopy(demo_body), "conditions": big_conditions()[:8]}  # about 90 KB
    async with start_grant(**BIG_BODIES, record_max_bytes=64 * limits.KIB) as harness:
        refused = await harness.client.post("/v1/grants", json=body, headers=REGULATOR)
        assert refused.status_code == 413, refused.text
        assert "65536-byte limit" in refused.json()["message"]
    async with start_grant(**BIG_BODIES) as harness:
        accepted = await harness.client.post("/v1/grants", json=body, headers=REGULATOR)
        assert accepted.status_code == 201, accepted.text
