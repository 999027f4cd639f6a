"""Recording a gateway's accesses without losing one while Kafka is down, and reading an
access's attributes from a key and a request (no LiteLLM needed)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from carveout_contracts import AccessRecorded, AccessRecordedData
from carveout_litellm.attributes import AttributeProblem, decision_request
from carveout_litellm.publisher import AccessPublisher, HttpChannel, access_in
from carveout_litellm.settings import CallbackSettings


def access(n: int) -> AccessRecorded:
    data = AccessRecordedData(
        request_id=f"req-{n}",
        grantee_id="org-netsec",
        model_id="mythos-preview",
        user_id="u",
        user_country="US",
        deployment_region="us-east",
        purpose="vulnerability-scanning",
        safeguards=["mfa"],
        units=n,
        gateway_id="litellm",
    )
    return AccessRecorded(
        event_id=uuid.UUID(int=n + 1),
        occurred_at=datetime(2026, 9, 1, tzinfo=UTC),
        producer="litellm",
        key="org-netsec",
        data=data,
    )


class Fake:
    """A channel that takes what it is given while ``up``, and remembers it."""

    def __init__(self, up: bool = True) -> None:
        self.up = up
        self.took: list[AccessRecorded] = []
        self.closed = False

    async def send(self, events: Sequence[AccessRecorded]) -> list[AccessRecorded]:
        if not self.up:
            return list(events)
        self.took += events
        return []

    async def close(self) -> None:
        self.closed = True


async def test_kafka_first_then_http_for_what_kafka_does_not_take() -> None:
    kafka, http = Fake(up=False), Fake()
    publisher = AccessPublisher(10, [kafka, http])
    publisher._pending.extend(access(n) for n in range(3))
    assert await publisher.flush() == 0
    assert [e.data.request_id for e in http.took] == ["req-0", "req-1", "req-2"]
    kafka.up = True
    publisher._pending.append(access(3))
    assert await publisher.flush() == 0
    assert [e.data.request_id for e in kafka.took] == ["req-3"]


async def test_what_neither_takes_stays_pending_in_order() -> None:
    kafka, http = Fake(up=False), Fake(up=False)
    publisher = AccessPublisher(10, [kafka, http])
    publisher._pending.extend(access(n) for n in range(3))
    assert await publisher.flush() == 3
    assert publisher.pending == 3
    http.up = True
    assert await publisher.flush() == 0
    assert [e.data.units for e in http.took] == [0, 1, 2]


async def test_a_full_buffer_says_so_and_keeps_what_it_holds() -> None:
    publisher = AccessPublisher(2, [Fake(up=False)])
    assert publisher.offer(access(0)) and publisher.offer(access(1))
    assert not publisher.has_room()
    assert publisher.offer(access(2)) is False
    assert publisher.pending == 2
    await publisher.close(within_s=0.5)


async def test_offered_accesses_are_published_in_the_background() -> None:
    http = Fake()
    publisher = AccessPublisher(10, [http])
    for n in range(3):
        publisher.offer(access(n))
    await publisher.close()
    assert [e.data.units for e in http.took] == [0, 1, 2]
    assert http.closed


def enforcement(answers: dict[str, int]) -> tuple[httpx.MockTransport, list[list[str]]]:
    """POST /v1/access answering each batch by its request ids' status in ``answers``."""
    batches: list[list[str]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/access"
        assert request.headers["authorization"] == "Bearer g"
        ids = [item["request_id"] for item in json.loads(request.content)]
        batches.append(ids)
        status = max(answers.get(i, 202) for i in ids)
        return httpx.Response(status, json={"accepted": len(ids)})

    return httpx.MockTransport(handle), batches


async def test_http_posts_the_accesses_with_their_event_ids() -> None:
    transport, batches = enforcement({})
    channel = HttpChannel("http://enforcement", "g", transport=transport)
    assert await channel.send([access(0), access(1)]) == []
    assert batches == [["req-0", "req-1"]]
    item = access_in(access(0))
    assert item["event_id"] == str(uuid.UUID(int=1))
    assert item["occurred_at"] == "2026-09-01T00:00:00Z"
    await channel.close()


async def test_http_keeps_what_a_busy_service_refused_and_drops_only_the_invalid() -> None:
    transport, batches = enforcement({"req-1": 503})
    channel = HttpChannel("http://enforcement", "g", transport=transport)
    assert [e.data.request_id for e in await channel.send([access(0), access(1)])] == [
        "req-0",
        "req-1",
    ]
    transport, batches = enforcement({"req-1": 422})
    channel = HttpChannel("http://enforcement", "g", transport=transport)
    assert await channel.send([access(0), access(1), access(2)]) == []
    assert batches == [["req-0", "req-1", "req-2"], ["req-0"], ["req-1"], ["req-2"]]


SETTINGS = CallbackSettings(gateway_token="g", gateway_id="litellm", gateway_region="us-east")


def test_headers_give_the_attributes_and_the_call_fills_the_rest() -> None:
    body = decision_request(
        {"X-Carveout-Grantee": "org-a", "x-carveout-safeguards": "mfa, access_logging,"},
        None,
        model="mythos-preview",
        user="u-9",
        call_id="call-1",
        settings=SETTINGS,
    )
    assert body == {
        "grantee_id": "org-a",
        "safeguards": ["mfa", "access_logging"],
        "model_id": "mythos-preview",
        "user_id": "u-9",
        "deployment_region": "us-east",
        "request_id": "call-1",
        "gateway_id": "litellm",
    }


def test_a_keys_metadata_wins_over_the_headers() -> None:
    key: dict[str, Any] = {"carveout": {"grantee_id": "org-bound", "user_country": "GB"}}
    body = decision_request(
        {"x-carveout-grantee": "org-claimed", "x-carveout-units": "12"},
        key,
        model="m",
        user=None,
        call_id=None,
        settings=SETTINGS,
    )
    assert (body["grantee_id"], body["user_country"], body["units"]) == ("org-bound", "GB", 12)


@pytest.mark.parametrize("units", ["-1", "1e3", str(2**53), "9" * 40, "\u0661"])
def test_units_must_be_a_whole_number_in_digits(units: str) -> None:
    with pytest.raises(AttributeProblem, match="x-carveout-units"):
        decision_request(
            {"x-carveout-units": units}, None, model="m", user="u", call_id="c", settings=SETTINGS
        )
