"""The grant service end to end in one process: HTTP in, outbox, relay, ``carveout.grants`` out."""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy.exc import OperationalError

from carveout_contracts import GrantIssued, decode, decode_token, topics

from .conftest import AUDITOR, GATEWAY, REGULATOR, GrantHarness

Starter = Callable[..., AbstractAsyncContextManager[GrantHarness]]


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def issue(harness: GrantHarness, body: dict[str, Any]) -> dict[str, Any]:
    response = await harness.client.post("/v1/grants", json=body, headers=REGULATOR)
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


# --------------------------------------------------------------------------- issue


async def test_issue_answers_201_with_the_whole_grant(
    grant_service: GrantHarness, demo_body: dict[str, Any]
) -> None:
    response = await grant_service.client.post("/v1/grants", json=demo_body, headers=REGULATOR)
    assert response.status_code == 201, response.text
    grant = response.json()
    assert re.fullmatch(r"grt_[0-9A-HJKMNP-TV-Z]{26}", grant["grant_id"])
    assert grant["version"] == 1
    assert grant["status"] == "active"
    assert grant["issued_by"] == "regulator"
    assert grant["carveout_id"] == "co-mythos-2026"
    assert grant["model_id"] == "mythos-preview"
    assert grant["grantee"] == demo_body["grantee"]
    assert [c["id"] for c in grant["conditions"]] == [c["id"] for c in demo_body["conditions"]]
    assert grant["breach_policy"] == demo_body["breach_policy"]
    assert grant["published"] is True
    assert response.headers["location"] == f"/v1/grants/{grant['grant_id']}"
    assert decode_token(grant["consistency_token"]) == {grant["grant_id"]: 1}
    assert grant["effective_at"] == grant["issued_at"]


async def test_issued_event_reaches_the_grants_topic(
    grant_service: GrantHarness, demo_body: dict[str, Any]
) -> None:
    grant = await issue(grant_service, demo_body)
    assert len(grant_service.published) == 1
    record = grant_service.published[0]
    event = decode(topics.GRANTS, record.value)
    assert isinstance(event, GrantIssued)
    assert str(event.event_id) == grant["event_id"]
    assert event.key == grant["grant_id"]
    assert event.producer == "grant"
    assert event.data.grant_id == grant["grant_id"]
    assert event.data.version == 1
    assert event.data.issued_by == "regulator"
    assert event.data.grantee.id == "org-netsec"
    assert record.key == grant["grant_id"].encode()
    assert record.headers["content-type"] == "application/json"
    # the outbox row is marked published once the broker has it
    assert grant_service.service.store.counts() == (1, 1)


async def test_issued_event_carries_a_traceparent_header(
    grant_service: GrantHarness, demo_body: dict[str, Any]
) -> None:
    """DESIGN §3: every event's headers carry a W3C ``traceparent``, a new trace by default."""
    await issue(grant_service, demo_body)
    await issue(grant_service, demo_body)
    first, second = (r.headers["traceparent"] for r in grant_service.published)
    for traceparent in (first, second):
        assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}", traceparent)
    assert first.split("-")[1] != second.split("-")[1]


async def test_a_callers_trace_continues_into_the_event(
    grant_service: GrantHarness, demo_body: dict[str, Any]
) -> None:
    """A regulator call made inside a trace announces its change inside the same trace."""
    incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    response = await grant_service.client.post(
        "/v1/grants", json=demo_body, headers={**REGULATOR, "traceparent": incoming}
    )
    assert response.status_code == 201
    traceparent = grant_service.published[0].headers["traceparent"]
    assert traceparent.split("-")[1] == "4bf92f3577b34da6a3ce929d0e0e4736"


async def test_each_issue_publishes_one_event_in_order(
    grant_service: GrantHarness, demo_body: dict[str, Any]
) -> None:
    ids = [(await issue(grant_service, demo_body))["grant_id"] for _ in range(3)]
    assert len(set(ids)) == 3
    events = [decode(topics.GRANTS, r.value) for r in grant_service.published]
    assert [e.data.grant_id for e in events] == ids
    assert grant_service.service.store.counts() == (3, 3)


async def test_an_unrelayed_issue_is_kept_in_the_outbox_until_relayed(
    start_grant: Starter, demo_body: dict[str, Any]
) -> None:
    """No lost regulator action: the grant and its event commit together, then relay."""
    async with start_grant(run_relay=False, relay_wait_seconds=0.05) as harness:
        grant = await issue(harness, demo_body)
        assert grant["published"] is False
        store = harness.service.store
        assert store.counts() == (1, 0)
        assert harness.published == []
        assert store.get(grant["grant_id"]) is not None

        assert await harness.service.relay.relay_once() == 1
        assert store.counts() == (1, 1)
        [record] = harness.published
        assert str(decode(topics.GRANTS, record.value).event_id) == grant["event_id"]
        assert await harness.service.relay.relay_once() == 0
        assert len(harness.published) == 1


async def test_the_service_assigns_id_version_and_issuer(
    grant_service: GrantHarness, demo_body: dict[str, Any]
) -> None:
    """``grant_id``, ``version`` and ``issued_by`` come from the service, never the body."""
    body = {**demo_body, "grant_id": "grt_mine", "version": 7, "issued_by": "mallory"}
    grant = await issue(grant_service, body)
    assert grant["grant_id"] != "grt_mine"
    assert (grant["version"], grant["issued_by"]) == (1, "regulator")
    event = decode(topics.GRANTS, grant_service.published[0].value)
    assert (event.data.grant_id, event.data.issued_by) == (grant["grant_id"], "regulator")


# --------------------------------------------------------------------------- validation


async def test_a_body_without_model_id_is_422_naming_the_field(
    grant_service: GrantHarness, demo_body: dict[str, Any]
) -> None:
    del demo_body["model_id"]
    response = await grant_service.client.post("/v1/grants", json=demo_body, headers=REGULATOR)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/json")
    answer = response.json()
    assert answer["error"] == "invalid_request"
    assert "model_id" in answer["message"]
    assert any(e["field"] == "model_id" for e in answer["errors"])
    assert grant_service.service.store.counts() == (0, 0)
    assert grant_service.published == []


async def test_a_window_that_ends_before_it_starts_is_422(
    grant_service: GrantHarness, demo_body: dict[str, Any]
) -> None:
    demo_body["valid_until"] = demo_body["valid_from"]
    response = await grant_service.client.post("/v1/grants", json=demo_body, headers=REGULATOR)
    assert response.status_code == 422
    assert "valid_until must be later than valid_from" in response.json()["message"]


# --------------------------------------------------------------------------- auth


async def test_issue_without_a_token_is_401(
    grant_service: GrantHarness, demo_body: dict[str, Any]
) -> None:
    response = await grant_service.client.post("/v1/grants", json=demo_body)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert "bearer" in response.json()["message"].lower()
    assert response.headers["www-authenticate"] == "Bearer"


async def test_issue_with_an_unknown_token_is_401(
    grant_service: GrantHarness, demo_body: dict[str, Any]
) -> None:
    response = await grant_service.client.post(
        "/v1/grants", json=demo_body, headers={"Authorization": "Bearer nope"}
    )
    assert response.status_code == 401


@pytest.mark.parametrize(("headers", "role"), [(GATEWAY, "gateway"), (AUDITOR, "auditor")])
async def test_issue_by_a_non_regulator_is_403(
    grant_service: GrantHarness, demo_body: dict[str, Any], headers: dict[str, str], role: str
) -> None:
    response = await grant_service.client.post("/v1/grants", json=demo_body, headers=headers)
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert role in response.json()["message"]
    assert grant_service.service.store.counts() == (0, 0)


async def test_reads_need_a_token(grant_service: GrantHarness) -> None:
    assert (await grant_service.client.get("/v1/grants")).status_code == 401
    assert (await grant_service.client.get("/v1/grants/grt_x")).status_code == 401


# --------------------------------------------------------------------------- reads


async def test_auditor_can_get_an_issued_grant(
    grant_service: GrantHarness, demo_body: dict[str, Any]
) -> None:
    issued = await issue(grant_service, demo_body)
    response = await grant_service.client.get(f"/v1/grants/{issued['grant_id']}", headers=AUDITOR)
    assert response.status_code == 200
    grant = response.json()
    for key in ("grant_id", "version", "status", "grantee", "conditions", "valid_until"):
        assert grant[key] == issued[key]
    assert "consistency_token" not in grant


async def test_get_of_an_unknown_grant_is_404_json(grant_service: GrantHarness) -> None:
    response = await grant_service.client.get("/v1/grants/grt_unknown", headers=AUDITOR)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"] == "not_found"
    assert "grt_unknown" in response.json()["message"]


async def test_list_filters_by_grantee_and_status_and_paginates(
    grant_service: GrantHarness, demo_body: dict[str, Any]
) -> None:
    now = datetime.now(UTC)
    other = {**demo_body, "grantee": {"id": "org-other", "name": "Other", "contacts": []}}
    expired = {
        **demo_body,
        "valid_from": iso(now - timedelta(days=30)),
        "valid_until": iso(now - timedelta(days=1)),
    }
    netsec = sorted([(await issue(grant_service, demo_body))["grant_id"] for _ in range(3)])
    other_id = (await issue(grant_service, other))["grant_id"]
    expired_id = (await issue(grant_service, expired))["grant_id"]

    async def page(**params: Any) -> dict[str, Any]:
        response = await grant_service.client.get("/v1/grants", params=params, headers=AUDITOR)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    everything = await page()
    assert everything["total"] == 5
    assert len(everything["items"]) == 5

    by_grantee = await page(grantee_id="org-netsec")
    assert by_grantee["total"] == 4
    assert other_id not in [g["grant_id"] for g in by_grantee["items"]]

    active = await page(grantee_id="org-netsec", status="active")
    assert active["total"] == 3
    assert sorted(g["grant_id"] for g in active["items"]) == netsec
    assert {g["status"] for g in active["items"]} == {"active"}

    gone = await page(status="expired")
    assert [g["grant_id"] for g in gone["items"]] == [expired_id]
    assert gone["items"][0]["status"] == "expired"
    assert (await page(status="revoked"))["total"] == 0

    first = await page(grantee_id="org-netsec", status="active", limit=2, offset=0)
    second = await page(grantee_id="org-netsec", status="active", limit=2, offset=2)
    assert (first["total"], second["total"]) == (3, 3)
    assert (len(first["items"]), len(second["items"])) == (2, 1)
    assert [g["grant_id"] for g in first["items"] + second["items"]] == netsec
    assert (second["limit"], second["offset"]) == (2, 2)


async def test_list_rejects_an_unknown_status(grant_service: GrantHarness) -> None:
    response = await grant_service.client.get(
        "/v1/grants", params={"status": "paused"}, headers=AUDITOR
    )
    assert response.status_code == 422
    assert "status" in response.json()["message"]


async def test_healthz_is_open(grant_service: GrantHarness) -> None:
    response = await grant_service.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "alive"}


async def test_a_store_failure_answers_a_json_error(
    start_grant: Starter, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with start_grant() as harness:

        def database_down(*_: Any, **__: Any) -> None:
            raise OperationalError("SELECT", {}, Exception("unable to open database file"))

        monkeypatch.setattr(harness.service.store, "get", database_down)
        transport = ASGITransport(app=harness.app, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="http://grant") as client:
            response = await client.get("/v1/grants/grt_x", headers=AUDITOR)
        assert response.status_code in (500, 503)
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["message"]
