"""``/v1/authz/`` with ``x-carveout-record: true``: each request published once per
(gateway, request id), off the request path, through a bounded buffer (DESIGN §14)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from carveout_contracts.events.access import access_event_id

from .authz_gate import ALLOWED, NOW, Gate, Starter, open_gate


@pytest.fixture
def start_gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Starter:
    return functools.partial(open_gate, tmp_path, monkeypatch)


@pytest.fixture
async def gate(start_gate: Starter) -> AsyncIterator[Gate]:
    async with start_gate() as started:
        yield started


# --------------------------------------------------------------------------- recording


async def test_nothing_is_recorded_unless_asked(gate: Gate) -> None:
    assert (await gate.ask(x_carveout_request_id="r-1")).status_code == 200
    assert await gate.published() == []


async def test_a_recorded_request_is_published_once_per_request_id(gate: Gate) -> None:
    asks = [
        await gate.ask(x_carveout_record="true", x_carveout_request_id="r-1"),
        await gate.ask(x_carveout_record="TRUE", x_carveout_request_id="r-1"),  # a retry
        await gate.ask(
            x_carveout_record="true", x_carveout_request_id="r-2", x_carveout_user_country="KP"
        ),
    ]
    assert [a.status_code for a in asks] == [200, 200, 403]
    expected = str(access_event_id("gw-edge", "r-1"))
    assert asks[0].headers["x-carveout-event-id"] == asks[1].headers["x-carveout-event-id"]
    assert asks[0].headers["x-carveout-event-id"] == expected
    events = await gate.published()
    assert [str(e.event_id) for e in events] == [
        expected,
        expected,
        str(access_event_id("gw-edge", "r-2")),
    ]
    first = events[0]
    assert first.occurred_at.timestamp() == NOW
    assert (first.producer, first.key) == ("gw-edge", "org-netsec")
    assert first.data.model_dump() == {
        "request_id": "r-1",
        "grantee_id": "org-netsec",
        "model_id": "mythos-preview",
        "grant_id": None,
        "user_id": "u-1842",
        "user_country": "GB",
        "deployment_region": "us-east",
        "purpose": "vulnerability-scanning",
        "safeguards": ["access_logging", "mfa"],
        "units": 120,
        "gateway_id": "gw-edge",
    }
    # Enforcement judged each access once: the retry shares its event id.
    listing = await gate.client.get("/v1/decisions", headers={"Authorization": "Bearer a"})
    items = listing.json()["items"]
    assert sorted((d["request_id"], d["decision"]) for d in items) == [
        ("r-1", "allow"),
        ("r-2", "deny"),
    ]


async def test_a_full_buffer_refuses_what_asks_to_be_recorded(start_gate: Starter) -> None:
    async with start_gate(authz_record_buffer=2) as gate:
        for n in range(2):
            ok = await gate.ask(x_carveout_record="true", x_carveout_request_id=f"r-{n}")
            assert ok.status_code == 200
        full = await gate.ask(x_carveout_record="true", x_carveout_request_id="r-2")
        assert full.status_code == 503
        assert full.json()["error"] == "record_buffer_full"
        assert "CARVEOUT_ENFORCEMENT_AUTHZ_RECORD_BUFFER" in full.json()["message"]
        assert full.headers["retry-after"] == "1"
        assert (await gate.ask()).status_code == 200  # asking alone needs no room
        assert len(await gate.published()) == 2
        again = await gate.ask(x_carveout_record="true", x_carveout_request_id="r-2")
        assert again.status_code == 200


async def test_what_fails_to_publish_stays_pending_in_order(gate: Gate) -> None:
    recorder = gate.endpoint.recorder
    real = recorder._publish
    calls = {"n": 0}

    async def flaky(value: bytes, key: bytes, headers: dict[str, str]) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise ConnectionError("broker unreachable")
        return await real(value, key, headers)

    recorder._publish = flaky
    for n in range(3):
        await gate.ask(x_carveout_record="true", x_carveout_request_id=f"r-{n}")
    assert await recorder.drain() == 1
    assert recorder.pending == 1
    events = await gate.published()
    assert [e.data.request_id for e in events] == ["r-0", "r-2", "r-1"]
    assert recorder.pending == 0


async def test_the_proxys_request_id_is_recorded_without_a_carveout_one(gate: Gate) -> None:
    """Envoy gives every request an x-request-id; x-carveout-request-id wins over it."""
    raw = [(k.encode(), v.encode()) for k, v in ALLOWED.items()]
    record = [(b"x-carveout-record", b"true")]
    envoy = await gate.client.get("/v1/authz/", headers=[*raw, *record, (b"x-request-id", b"e-1")])
    assert envoy.status_code == 200, envoy.text
    assert envoy.headers["x-carveout-event-id"] == str(access_event_id("gw-edge", "e-1"))
    both = [*raw, *record, (b"x-request-id", b"e-2"), (b"x-carveout-request-id", b"c-2")]
    answer = await gate.client.get("/v1/authz/", headers=both)
    assert answer.headers["x-carveout-event-id"] == str(access_event_id("gw-edge", "c-2"))
    long = [*raw, *record, (b"x-request-id", b"e" * 201)]
    refused = await gate.client.get("/v1/authz/", headers=long)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "x-request-id"
