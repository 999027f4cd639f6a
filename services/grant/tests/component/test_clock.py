"""The API reads the time from the clock the app is given, not from the system."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import Session, select

from carveout_grant.store import GrantEventRecord

from .conftest import REGULATOR, Starter

LATER = datetime(2031, 1, 1, tzinfo=UTC)
"""After the demo grant's validity: an injected clock, years from the system's."""


async def test_actions_take_effect_and_grants_are_judged_at_the_clock(
    start_grant: Starter, demo_body: dict[str, Any]
) -> None:
    async with start_grant(clock=lambda: LATER) as harness:
        issued = await harness.client.post("/v1/grants", json=demo_body, headers=REGULATOR)
        assert issued.status_code == 201, issued.text
        grant = issued.json()
        assert datetime.fromisoformat(grant["effective_at"]) == LATER
        assert grant["status"] == "expired"

        shown = await harness.client.get(f"/v1/grants/{grant['grant_id']}", headers=REGULATOR)
        assert shown.json()["status"] == "expired"
        listed = await harness.client.get("/v1/grants?status=expired", headers=REGULATOR)
        assert [g["grant_id"] for g in listed.json()["items"]] == [grant["grant_id"]]

        suspended = await harness.client.post(
            f"/v1/grants/{grant['grant_id']}/suspend", json={"reason": "r"}, headers=REGULATOR
        )
        assert suspended.status_code == 200, suspended.text
        assert datetime.fromisoformat(suspended.json()["effective_at"]) == LATER


async def test_the_relay_stamps_publication_with_the_clock(
    start_grant: Starter, demo_body: dict[str, Any]
) -> None:
    published_at = LATER + timedelta(hours=1)
    async with start_grant(clock=lambda: published_at) as harness:
        response = await harness.client.post("/v1/grants", json=demo_body, headers=REGULATOR)
        assert response.json()["published"] is True
        assert harness.service.store.counts() == (1, 1)
        with Session(harness.service.store.engine) as session:
            row = session.exec(select(GrantEventRecord)).one()
        assert row.published_at is not None
        assert datetime.fromisoformat(row.published_at) == published_at
