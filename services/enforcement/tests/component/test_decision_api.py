"""Enforcement over HTTP: the decision API (fail closed, consistency tokens), publishing
accesses for gateways, and the decision and breach listings (DESIGN §4, §5).

FastStream's in-memory ``TestKafkaBroker`` carries the events; subscribers of our own
capture what is published on ``carveout.access`` and ``carveout.breaches``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from httpx import ASGITransport, AsyncClient, Response

from carveout_contracts import AccessRecorded, codec, topics
from carveout_contracts.consistency import decode_token, encode_token
from carveout_enforcement.app import create_app
from carveout_enforcement.context import EnforcementContext
from carveout_runtime.auth import NamedToken, Role, TokenBook
from carveout_runtime.composition import context_of
from carveout_runtime.edge import edge_state

from .conftest import settings_for

GOLDEN = Path(__file__).resolve().parents[4] / "contracts" / "golden"
GRANT_ID = "grt_01JYXK6R3B4C5D6E7F8G9H0JKM"
GOLDEN_ACCESS: dict[str, Any] = json.loads((GOLDEN / "access.recorded.v1.json").read_bytes())
GATEWAY = {"Authorization": "Bearer g"}
REGULATOR = {"Authorization": "Bearer r"}
AUDITOR = {"Authorization": "Bearer a"}
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@dataclass
class Captured:
    value: bytes
    key: bytes | None
    headers: dict[str, str]


@dataclass
class Record:
    value: bytes
    topic: str = topics.ACCESS
    partition: int = 0
    offset: int = 0
    key: bytes | None = b"org-netsec"
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class Api:
    app: FastAPI
    broker: KafkaBroker
    client: AsyncClient
    sent: dict[str, list[Captured]] = field(default_factory=dict)
    fresh: bool = True
    fresh_bounds: list[float] = field(default_factory=list)

    @property
    def context(self) -> EnforcementContext:
        return context_of(self.app, EnforcementContext)

    async def grant_event(self, event_type: str) -> None:
        value = (GOLDEN / f"{event_type}.v1.json").read_bytes()
        await self.broker.publish(value, topics.GRANTS, key=GRANT_ID.encode())

    async def decide(self, headers: dict[str, str] | None = None, **changes: Any) -> Response:
        body = {**GOLDEN_ACCESS["data"], "occurred_at": "2026-09-10T11:04:59Z", **changes}
        body = {k: v for k, v in body.items() if v is not ...}
        return await self.client.post(
            "/v1/decisions", json=body, headers=GATEWAY if headers is None else headers
        )


def capture(bucket: list[Captured]) -> Callable[..., Any]:
    async def on_message(body: bytes, message: KafkaMessage) -> None:
        raw: Any = message.raw_message
        headers = {name: value.decode() for name, value in raw.headers}
        bucket.append(Captured(body, raw.key, headers))

    return on_message


async def _raw_body(message: Any) -> bytes:
    return bytes(message.body)


Starter = Callable[..., AbstractAsyncContextManager[Api]]


@pytest.fixture
def start_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Starter:
    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[Api]:
        settings = settings_for(
            tmp_path,
            # The golden grant runs to 2026-12-31; accesses at its end are judged here, not
            # refused as dated ahead of now (tests/test_limits.py holds that bound).
            **{
                "consistency_wait_seconds": 0.2,
                "max_future_skew_seconds": 10 * 365 * 86400,
                **overrides,
            },
        )
        broker = KafkaBroker("localhost:1")
        app = create_app(settings, broker)
        sent: dict[str, list[Captured]] = {topics.ACCESS: [], topics.BREACHES: []}
        for topic, bucket in sent.items():
            broker.subscriber(topic, decoder=_raw_body)(capture(bucket))

        api_ref: list[Api] = []
        grants_log = context_of(app, EnforcementContext).grants_log

        def fresh(bound_s: float) -> bool:
            api_ref[0].fresh_bounds.append(bound_s)
            return api_ref[0].fresh

        async def caught_up(within_s: float) -> bool:
            return True  # no real broker to ask for the grants log's end offsets

        monkeypatch.setattr(grants_log, "fresh", fresh)
        monkeypatch.setattr(grants_log, "wait_caught_up", caught_up)

        async with TestKafkaBroker(broker) as test_broker:
            transport = ASGITransport(app=app)
            async with AsyncClient(transport=transport, base_url="http://enforcement") as client:
                api = Api(app, test_broker, client, sent)
                api_ref.append(api)
                yield api

    return start


@pytest.fixture
async def api(start_api: Starter) -> AsyncIterator[Api]:
    async with start_api() as started:
        yield started


@pytest.fixture
async def granted(api: Api) -> Api:
    await api.grant_event("grant.issued")
    return api


def violation_ids(answer: dict[str, Any]) -> list[str]:
    return [v["condition_id"] for v in answer["violations"]]


# --------------------------------------------------------------------------- POST /v1/decisions


async def test_a_compliant_access_is_allowed(granted: Api) -> None:
    response = await granted.decide(user_country="US")
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["decision"] == "allow"
    assert answer["violations"] == []
    assert (answer["grant_id"], answer["grant_version"]) == (GRANT_ID, 1)
    assert decode_token(answer["consistency_token"]) == {GRANT_ID: 1}
    assert answer["consistency"]["required"] is False
    assert answer["consistency"]["met"] is True


async def test_a_breaking_access_is_denied_with_its_violations(granted: Api) -> None:
    response = await granted.decide(user_country="KP", safeguards=["access_logging"])
    answer = response.json()
    assert answer["decision"] == "deny"
    assert violation_ids(answer) == ["countries", "embargo", "safeguards"]
    safeguards = answer["violations"][2]
    assert safeguards["expected"] == {"require": ["access_logging", "mfa"]}
    assert safeguards["actual"] == {"attested": ["access_logging"], "missing": ["mfa"]}


async def test_warnings_alone_allow(granted: Api) -> None:
    answer = (await granted.decide(user_country="US", purpose="ads")).json()
    assert answer["decision"] == "allow"
    assert [(v["condition_id"], v["severity"]) for v in answer["violations"]] == [
        ("purpose", "warning")
    ]


async def test_an_unknown_grantee_has_no_active_grant(granted: Api) -> None:
    answer = (await granted.decide(grantee_id="org-unknown", grant_id=None)).json()
    assert answer["decision"] == "deny"
    [violation] = answer["violations"]
    assert (violation["kind"], violation["actual"]) == ("no_active_grant", "unknown")
    assert answer["grant_id"] is None
    assert answer["consistency_token"] is None


async def test_decisions_are_as_of_the_access_time(granted: Api) -> None:
    await granted.grant_event("grant.suspended")  # v3, effective 2026-08-03T09:20:00Z
    before = (await granted.decide(user_country="US", occurred_at="2026-08-03T09:19:59Z")).json()
    assert (before["decision"], before["grant_version"]) == ("allow", 1)
    during = (await granted.decide(user_country="US", occurred_at="2026-08-04T00:00:00Z")).json()
    assert during["decision"] == "deny"
    assert [(v["kind"], v["actual"]) for v in during["violations"]] == [
        ("no_active_grant", "suspended")
    ]
    assert during["grant_version"] == 3
    assert decode_token(during["consistency_token"]) == {GRANT_ID: 3}


async def test_asking_records_nothing(granted: Api) -> None:
    for country in ("US", "KP"):
        assert (await granted.decide(user_country=country)).status_code == 200
    listing = await granted.client.get("/v1/decisions", headers=AUDITOR)
    assert listing.json() == {"items": [], "total": 0}
    assert granted.sent == {topics.ACCESS: [], topics.BREACHES: []}
    assert granted.context.usage == {}


async def test_deciding_needs_the_gateway_role(granted: Api) -> None:
    for headers, status, error in [
        ({}, 401, "unauthorized"),
        ({"Authorization": "Bearer nope"}, 401, "unauthorized"),
        ({"Authorization": "Basic g"}, 401, "unauthorized"),
        (REGULATOR, 403, "forbidden"),
        (AUDITOR, 403, "forbidden"),
    ]:
        response = await granted.decide(headers=headers)
        assert response.status_code == status, headers
        assert response.json()["error"] == error
        assert response.json()["message"]


async def test_an_invalid_request_names_the_field(granted: Api) -> None:
    response = await granted.decide(units=-1)
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
    assert "units" in response.json()["message"]
    response = await granted.decide(grantee_id=...)
    assert response.status_code == 422
    assert "grantee_id" in response.json()["message"]


# --------------------------------------------------------------------------- fail closed


@pytest.mark.parametrize("body", [b"[" * 5000 + b"]" * 5000, b'{"a":' * 6000 + b"1" + b"}" * 6000])
async def test_json_nested_past_the_parser_is_a_422_not_a_500(granted: Api, body: bytes) -> None:
    response = await granted.client.post(
        "/v1/decisions",
        content=body,
        headers={**GATEWAY, "content-type": "application/json"},
    )
    assert response.status_code == 422, response.text


async def test_it_fails_closed_when_the_grants_log_is_not_fresh(granted: Api) -> None:
    granted.fresh = False
    response = await granted.decide(user_country="US")
    assert response.status_code == 200
    answer = response.json()
    assert answer["decision"] == "deny"
    [violation] = answer["violations"]
    assert (violation["condition_id"], violation["kind"]) == ("stale", "stale")
    assert violation["severity"] == "critical"
    assert answer["grant_id"] is None
    assert answer["consistency_token"] is None
    assert granted.fresh_bounds[-1] == granted.context.settings.stale_after_seconds

    granted.fresh = True
    assert (await granted.decide(user_country="US")).json()["decision"] == "allow"


# --------------------------------------------------------------------------- min_consistency


async def test_a_token_not_yet_applied_waits_then_denies_stale(granted: Api) -> None:
    token = encode_token({GRANT_ID: 3})  # the suspension, not yet consumed
    started = asyncio.get_running_loop().time()
    response = await granted.decide(user_country="US", min_consistency=token)
    elapsed = asyncio.get_running_loop().time() - started
    answer = response.json()
    assert answer["decision"] == "deny"
    [violation] = answer["violations"]
    assert violation["kind"] == "stale"
    assert violation["expected"] == {"min_consistency": token}
    assert answer["consistency"]["required"] is True
    assert answer["consistency"]["met"] is False
    assert answer["consistency"]["waited_ms"] >= 150  # consistency_wait_seconds is 0.2
    assert 0.15 <= elapsed < 2


async def test_a_token_for_an_unknown_grant_is_not_met(granted: Api) -> None:
    token = encode_token({"grt_never_issued": 1})
    answer = (await granted.decide(user_country="US", min_consistency=token)).json()
    assert (answer["decision"], answer["consistency"]["met"]) == ("deny", False)


async def test_a_satisfied_token_gives_the_normal_answer(granted: Api) -> None:
    answer = (
        await granted.decide(user_country="US", min_consistency=encode_token({GRANT_ID: 1}))
    ).json()
    assert answer["decision"] == "allow"
    assert answer["consistency"] == {
        "required": True,
        "met": True,
        "waited_ms": answer["consistency"]["waited_ms"],
    }
    assert answer["consistency"]["waited_ms"] < 150


async def test_a_token_applied_while_waiting_is_met_at_once(
    start_api: Starter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new-enemy case: the suspension arrives while the decision waits for it."""
    async with start_api(consistency_wait_seconds=10) as api:
        await api.grant_event("grant.issued")
        index = api.context.index
        waiting = asyncio.Event()
        real_wait = index.wait_for

        async def wait_for(versions: dict[str, int], within_s: float) -> bool:
            waiting.set()
            result: bool = await real_wait(versions, within_s)
            return result

        monkeypatch.setattr(index, "wait_for", wait_for)

        async def suspend_once_waiting() -> None:
            await asyncio.wait_for(waiting.wait(), 5)
            await api.grant_event("grant.suspended")

        token = encode_token({GRANT_ID: 3})
        response, _ = await asyncio.wait_for(
            asyncio.gather(
                api.decide(
                    user_country="US", occurred_at="2026-08-04T00:00:00Z", min_consistency=token
                ),
                suspend_once_waiting(),
            ),
            5,
        )
        answer = response.json()
        assert answer["consistency"]["met"] is True
        assert answer["consistency"]["waited_ms"] < 5000
        assert answer["decision"] == "deny"
        assert [(v["kind"], v["actual"]) for v in answer["violations"]] == [
            ("no_active_grant", "suspended")
        ]
        assert answer["grant_version"] == 3


async def test_a_corrupt_token_is_rejected(granted: Api) -> None:
    for token in ["garbage", "ct1.!!!", "ct1.e3", "ct1.WzFd"]:  # not ct1, not base64/JSON/dict
        response = await granted.decide(min_consistency=token)
        assert response.status_code == 422, token
        body = response.json()
        assert body["error"] == "invalid_request"
        assert "min_consistency" in body["message"]


# --------------------------------------------------------------------------- one answer


async def answer_to(api: Api, body: dict[str, Any]) -> tuple[int, Any]:
    response = await api.client.post("/v1/decisions", json=body, headers=GATEWAY)
    result = response.json()
    if response.status_code == 200:
        result["consistency"].pop("waited_ms")
        return 200, result
    return response.status_code, result["error"]


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"user_country": "us"},
        {"user_country": "US", "safeguards": []},
        {"user_country": "US", "purpose": "ads", "units": 2_000_000},
        {"user_country": "US", "occurred_at": "2026-09-10T16:34:59+05:30"},
        {"user_country": "US", "occurred_at": "2026-12-30T23:59:59.999999Z"},
        {"user_country": "US", "occurred_at": "2026-12-31T00:00:00Z"},
        {"grantee_id": "org-other", "grant_id": None},
        {"units": 2**53 - 1},
        pytest.param(
            {"user_country": "US", "occurred_at": "2026-12-30T23:59:59.9999999Z"},
            id="sub-microsecond-at-valid-until",
        ),
        pytest.param(
            {"units": 2**53},
            id="units-over-max",
        ),
        pytest.param(
            {"units": 2**64},
            id="units-over-64-bits",
        ),
        pytest.param(
            {"occurred_at": "0001-01-01T00:00:00+01:00"},
            id="out-of-range-time",
        ),
    ],
    ids=lambda changes: ",".join(changes) or "golden",
)
async def test_padding_an_identifier_does_not_change_the_answer(
    granted: Api, changes: dict[str, Any]
) -> None:
    """The contract strips white space, so a padded user_id is the same request; it is also
    the request the lean endpoint leaves to the documented pydantic model."""
    body = {**GOLDEN_ACCESS["data"], "occurred_at": "2026-09-10T11:04:59Z", **changes}
    plain = await answer_to(granted, body)
    padded = await answer_to(granted, {**body, "user_id": f" {body['user_id']}\t"})
    assert plain == padded


@pytest.mark.parametrize(
    "changes",
    [
        {"user_country": "US"},
        {"user_country": "KP"},
        {"user_country": "US", "safeguards": ["mfa"], "purpose": "ads"},
        {"user_country": "US", "units": 999_000},
        {"user_country": "US", "occurred_at": "2026-12-31T00:00:00Z"},
        {"grantee_id": "org-other", "grant_id": None},
        pytest.param(
            {"user_country": "US", "occurred_at": "2026-12-30T23:59:59.9999999Z"},
            id="sub-microsecond-at-valid-until",
        ),
    ],
    ids=lambda changes: ",".join(f"{k}={v}" for k, v in changes.items()),
)
async def test_asking_and_recording_give_the_same_judgement(
    granted: Api, changes: dict[str, Any]
) -> None:
    """What the decision API answers for an access is what the pipeline records for it."""
    occurred_at = changes.pop("occurred_at", "2026-09-10T11:04:59Z")
    status, asked = await answer_to(granted, {**access_in(**changes), "occurred_at": occurred_at})
    assert status == 200
    event_id = str(uuid.uuid4())
    value = access_value(event_id, occurred_at, **changes)
    await granted.context.pipeline.process([Record(value)])
    [recorded] = (await listing(granted, "/v1/decisions"))["items"]
    assert recorded["access_event_id"] == event_id
    assert (recorded["decision"], recorded["violations"]) == (
        asked["decision"],
        asked["violations"],
    )
    assert (recorded["grant_id"], recorded["grant_version"]) == (
        asked["grant_id"],
        asked["grant_version"],
    )


# --------------------------------------------------------------------------- POST /v1/access


def access_in(**changes: Any) -> dict[str, Any]:
    return {**GOLDEN_ACCESS["data"], **changes}


async def test_an_access_is_published_as_access_recorded(granted: Api) -> None:
    event_id = str(uuid.uuid4())
    body = access_in(user_country="US", occurred_at="2026-09-10T11:04:59Z", event_id=event_id)
    response = await granted.client.post(
        "/v1/access", json=body, headers={**GATEWAY, "traceparent": TRACEPARENT}
    )
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 1, "event_ids": [event_id]}

    [sent] = granted.sent[topics.ACCESS]
    assert sent.key == b"org-netsec"
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["traceparent"] == TRACEPARENT
    event = codec.decode(topics.ACCESS, sent.value)
    assert isinstance(event, AccessRecorded)
    assert (str(event.event_id), event.type, event.version) == (event_id, "access.recorded", 1)
    assert event.occurred_at == datetime(2026, 9, 10, 11, 4, 59, tzinfo=UTC)
    assert event.producer == "gw-us-east-1"
    assert event.key == "org-netsec"
    assert event.data.model_dump() == {**GOLDEN_ACCESS["data"], "user_country": "US"}
    # on the in-memory broker the pipeline judged it at once
    listing = (await granted.client.get("/v1/decisions", headers=AUDITOR)).json()
    assert [(d["access_event_id"], d["decision"]) for d in listing["items"]] == [
        (event_id, "allow")
    ]


async def test_a_list_of_accesses_is_published_in_order(granted: Api) -> None:
    bodies = [access_in(request_id=f"req_{i}", units=i) for i in range(3)]
    response = await granted.client.post("/v1/access", json=bodies, headers=GATEWAY)
    assert response.status_code == 202
    answer = response.json()
    assert answer["accepted"] == 3
    assert len(set(answer["event_ids"])) == 3
    events = [codec.decode(topics.ACCESS, s.value) for s in granted.sent[topics.ACCESS]]
    assert [e.data.request_id for e in events] == ["req_0", "req_1", "req_2"]
    assert [str(e.event_id) for e in events] == answer["event_ids"]
    # occurred_at defaults to when the gateway said so: now
    assert all(abs((e.occurred_at - datetime.now(UTC)).total_seconds()) < 60 for e in events)


async def test_an_access_sent_twice_is_recorded_once(granted: Api) -> None:
    body = access_in(event_id=str(uuid.uuid4()), occurred_at="2026-09-10T11:04:59Z")
    for _ in range(2):
        response = await granted.client.post("/v1/access", json=body, headers=GATEWAY)
        assert response.status_code == 202
    assert len(granted.sent[topics.ACCESS]) == 2
    listing = (await granted.client.get("/v1/decisions", headers=AUDITOR)).json()
    assert listing["total"] == 1
    assert len(granted.sent[topics.BREACHES]) == 1  # the KP user's breach, once


async def test_an_invalid_item_rejects_the_whole_request_naming_the_field(granted: Api) -> None:
    bodies = [access_in(), access_in(units=-1), access_in()]
    response = await granted.client.post("/v1/access", json=bodies, headers=GATEWAY)
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_request"
    assert any(e["field"].endswith("1.units") for e in body["errors"]), body
    assert granted.sent[topics.ACCESS] == []

    response = await granted.client.post(
        "/v1/access", json=access_in(user_country="Narnia"), headers=GATEWAY
    )
    assert response.status_code == 422
    assert "user_country" in response.json()["message"]
    assert granted.sent[topics.ACCESS] == []


async def test_publishing_needs_the_gateway_role(granted: Api) -> None:
    for headers, status in [({}, 401), (REGULATOR, 403), (AUDITOR, 403)]:
        response = await granted.client.post("/v1/access", json=access_in(), headers=headers)
        assert response.status_code == status, headers
    assert granted.sent[topics.ACCESS] == []


async def test_an_access_published_on_the_broker_is_judged(granted: Api) -> None:
    """Through the access subscriber: TestKafkaBroker delivers a batch as a list (an earlier
    version read that list as one record)."""
    event_id = str(uuid.uuid4())
    value = access_value(event_id, "2026-09-10T11:04:59Z")
    await granted.broker.publish(value, topics.ACCESS, key=b"org-netsec")
    page = await listing(granted, "/v1/decisions")
    assert [(d["access_event_id"], d["decision"]) for d in page["items"]] == [(event_id, "deny")]
    [breach] = granted.sent[topics.BREACHES]
    assert json.loads(breach.value)["data"]["access_event_id"] == event_id


# --------------------------------------------------------------------------- listings


def access_value(event_id: str, occurred_at: str, **data: Any) -> bytes:
    payload = json.loads(json.dumps(GOLDEN_ACCESS))
    payload.update(event_id=event_id, occurred_at=occurred_at)
    payload["data"].update(data)
    return json.dumps(payload).encode()


IDS = {
    name: str(uuid.UUID(int=i + 1)) for i, name in enumerate(["kp", "ok", "mfa", "other", "ads"])
}


@pytest.fixture
async def judged(granted: Api) -> Api:
    """Five accesses through the pipeline, an hour apart."""
    values = [
        access_value(IDS["kp"], "2026-09-10T10:00:00Z"),  # deny: countries + embargo
        access_value(IDS["ok"], "2026-09-10T11:00:00Z", user_country="US"),  # allow
        access_value(IDS["mfa"], "2026-09-10T12:00:00Z", user_country="US", safeguards=[]),
        access_value(IDS["other"], "2026-09-10T13:00:00Z", grantee_id="org-other", grant_id=None),
        access_value(IDS["ads"], "2026-09-10T14:00:00Z", user_country="US", purpose="ads"),
    ]
    await granted.context.pipeline.process([Record(v, offset=i) for i, v in enumerate(values)])
    return granted


async def listing(api: Api, path: str, **params: Any) -> dict[str, Any]:
    response = await api.client.get(path, params=params, headers=AUDITOR)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def names(items: list[dict[str, Any]]) -> list[str]:
    by_id = {v: k for k, v in IDS.items()}
    return [by_id[item["access_event_id"]] for item in items]


async def test_decisions_are_listed_newest_first(judged: Api) -> None:
    page = await listing(judged, "/v1/decisions")
    assert page["total"] == 5
    assert names(page["items"]) == ["ads", "other", "mfa", "ok", "kp"]
    ads, other, mfa, ok, kp = page["items"]
    assert (ok["decision"], ok["violations"], ok["grant_id"], ok["grant_version"]) == (
        "allow",
        [],
        GRANT_ID,
        1,
    )
    assert kp["decision"] == "deny"
    assert [v["condition_id"] for v in kp["violations"]] == ["countries", "embargo"]
    assert [v["condition_id"] for v in mfa["violations"]] == ["safeguards"]
    assert other["grant_id"] is None
    assert [(v["kind"], v["actual"]) for v in other["violations"]] == [
        ("no_active_grant", "unknown")
    ]
    assert (ads["decision"], ads["violations"][0]["severity"]) == ("allow", "warning")
    assert datetime.fromisoformat(kp["occurred_at"]) == datetime(2026, 9, 10, 10, tzinfo=UTC)
    assert (kp["request_id"], kp["user_id"], kp["gateway_id"], kp["units"]) == (
        "req_4f7a2c9e1b3d",
        "u-1842",
        "gw-us-east-1",
        5120,
    )


async def test_decisions_are_filtered_and_paged(judged: Api) -> None:
    by_grantee = await listing(judged, "/v1/decisions", grantee_id="org-other")
    assert (names(by_grantee["items"]), by_grantee["total"]) == (["other"], 1)
    by_grant = await listing(judged, "/v1/decisions", grant_id=GRANT_ID)
    assert (names(by_grant["items"]), by_grant["total"]) == (["ads", "mfa", "ok", "kp"], 4)
    window = await listing(
        judged, "/v1/decisions", since="2026-09-10T11:00:00Z", until="2026-09-10T13:00:00Z"
    )
    assert (names(window["items"]), window["total"]) == (["mfa", "ok"], 2)  # until excluded
    paged = await listing(judged, "/v1/decisions", limit=2, offset=1)
    assert (names(paged["items"]), paged["total"]) == (["other", "mfa"], 5)
    last = await listing(judged, "/v1/decisions", limit=2, offset=4)
    assert (names(last["items"]), last["total"]) == (["kp"], 5)
    both = await listing(judged, "/v1/decisions", grant_id=GRANT_ID, since="2026-09-10T12:00:00Z")
    assert names(both["items"]) == ["ads", "mfa"]


async def test_breaches_are_listed_with_their_events(judged: Api) -> None:
    page = await listing(judged, "/v1/breaches")
    assert page["total"] == 4
    assert names(page["items"]) == ["ads", "other", "mfa", "kp"]
    published = {
        json.loads(s.value)["data"]["breach_id"]: json.loads(s.value)["event_id"]
        for s in judged.sent[topics.BREACHES]
    }
    assert len(published) == 4
    for item in page["items"]:
        assert item["published"] is True
        assert published[item["breach_id"]] == item["event_id"]
    ads, other, mfa, kp = page["items"]
    assert (kp["severity"], kp["grant_id"], kp["grant_version"]) == ("critical", GRANT_ID, 1)
    assert (ads["severity"], mfa["severity"]) == ("warning", "critical")
    assert (other["grant_id"], other["grantee_id"]) == (None, "org-other")
    assert [v["condition_id"] for v in kp["violations"]] == ["countries", "embargo"]
    keys = sorted(s.key or b"" for s in judged.sent[topics.BREACHES])
    assert keys == sorted([GRANT_ID.encode()] * 3 + [b"org-other"])


async def test_breaches_are_filtered_and_paged(judged: Api) -> None:
    other = await listing(judged, "/v1/breaches", grantee_id="org-other")
    assert (names(other["items"]), other["total"]) == (["other"], 1)
    by_grant = await listing(judged, "/v1/breaches", grant_id=GRANT_ID)
    assert (names(by_grant["items"]), by_grant["total"]) == (["ads", "mfa", "kp"], 3)
    window = await listing(
        judged, "/v1/breaches", since="2026-09-10T10:00:01Z", until="2026-09-10T14:00:00Z"
    )
    assert (names(window["items"]), window["total"]) == (["other", "mfa"], 2)
    paged = await listing(judged, "/v1/breaches", limit=1, offset=2)
    assert (names(paged["items"]), paged["total"]) == (["mfa"], 4)


@pytest.mark.parametrize("path", ["/v1/decisions", "/v1/breaches"])
async def test_listings_need_a_token_and_check_paging(judged: Api, path: str) -> None:
    assert (await judged.client.get(path)).status_code == 401
    for headers in (REGULATOR, AUDITOR):
        assert (await judged.client.get(path, headers=headers)).status_code == 200
    # Least privilege: a gateway asks and publishes; it does not read what others did.
    assert (await judged.client.get(path, headers=GATEWAY)).status_code == 403
    for params in ({"limit": 0}, {"limit": 1001}, {"offset": -1}, {"since": "yesterday"}):
        response = await judged.client.get(path, params=params, headers=AUDITOR)
        assert response.status_code == 422, params
        assert response.json()["error"] == "invalid_request"


# --------------------------------------------------------------------------- named gateway tokens

EAST = {"Authorization": "Bearer east"}


def with_named_gateway(api: Api) -> Api:
    """The token file's ``named`` entry: token ``east`` is gateway ``gw-us-east-1``."""
    edge = edge_state(api.app)
    book = edge.tokens
    edge.tokens = TokenBook(book.tokens, (NamedToken("gw-us-east-1", Role.GATEWAY, "east"),))
    return api


async def test_a_named_gateway_publishes_under_its_own_id(granted: Api) -> None:
    api = with_named_gateway(granted)
    body = access_in(user_country="US", occurred_at="2026-09-10T11:04:59Z")
    del body["gateway_id"]
    response = await api.client.post("/v1/access", json=[body, body], headers=EAST)
    assert response.status_code == 202, response.text
    events = [codec.decode(topics.ACCESS, s.value) for s in api.sent[topics.ACCESS]]
    assert all(isinstance(e, AccessRecorded) for e in events)
    pairs = [(e.producer, e.data.gateway_id) for e in events if isinstance(e, AccessRecorded)]
    assert pairs == [("gw-us-east-1", "gw-us-east-1")] * 2
    # a role token names the gateway itself, so it must say which
    response = await api.client.post("/v1/access", json=body, headers=GATEWAY)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "gateway_id"


@pytest.mark.parametrize("path", ["/v1/access", "/v1/decisions"])
async def test_a_named_gateway_cannot_speak_for_another(granted: Api, path: str) -> None:
    api = with_named_gateway(granted)
    body = access_in(user_country="US", occurred_at="2026-09-10T11:04:59Z", gateway_id="gw-west")
    response = await api.client.post(path, json=body, headers=EAST)
    assert response.status_code == 403, response.text
    assert response.json()["error"] == "forbidden"
    assert "'gw-west'" in response.json()["message"]
    assert "'gw-us-east-1'" in response.json()["message"]
    assert api.sent[topics.ACCESS] == []
    # its own id is fine, and the role token still speaks for any gateway
    own = {**body, "gateway_id": "gw-us-east-1"}
    assert (await api.client.post(path, json=own, headers=EAST)).status_code in (200, 202)
    assert (await api.client.post(path, json=body, headers=GATEWAY)).status_code in (200, 202)
