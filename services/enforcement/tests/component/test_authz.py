"""``/v1/authz/``, the external-authorization endpoint (DESIGN §14), in one process.

The access's attributes come from ``x-carveout-*`` headers, the gateway's token from
``x-carveout-gateway-token``; FastStream's in-memory broker carries what is recorded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from faststream.kafka import KafkaBroker, TestKafkaBroker
from httpx import ASGITransport, AsyncClient, Response
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carveout_contracts import AccessRecorded, codec, topics
from carveout_contracts.consistency import decode_token
from carveout_contracts.events.access import access_event_id
from carveout_enforcement.app import create_app
from carveout_enforcement.context import EnforcementContext
from carveout_enforcement.decision.authz import AuthzEndpoint, authz_of
from carveout_runtime.auth import NamedToken, Role, TokenBook
from carveout_runtime.composition import context_of
from carveout_runtime.edge import edge_state

from .conftest import settings_for

GOLDEN = Path(__file__).resolve().parents[4] / "contracts" / "golden"
GRANT_ID = "grt_01JYXK6R3B4C5D6E7F8G9H0JKM"
NOW = datetime(2026, 9, 10, 11, 4, 59, tzinfo=UTC).timestamp()
ALLOWED = {
    "x-carveout-gateway-token": "g",
    "x-carveout-gateway": "gw-edge",
    "x-carveout-grantee": "org-netsec",
    "x-carveout-model": "mythos-preview",
    "x-carveout-user": "u-1842",
    "x-carveout-user-country": "GB",
    "x-carveout-region": "us-east",
    "x-carveout-purpose": "vulnerability-scanning",
    "x-carveout-safeguards": "access_logging, mfa",
    "x-carveout-units": "120",
}


@dataclass
class Gate:
    app: FastAPI
    broker: KafkaBroker
    client: AsyncClient
    recorded: list[bytes] = field(default_factory=list)

    @property
    def endpoint(self) -> AuthzEndpoint:
        return authz_of(self.app)

    async def ask(
        self, path: str = "/v1/authz/v1/chat/completions", method: str = "POST", **changes: Any
    ) -> Response:
        """``changes`` by header name with ``_`` for ``-``; ``None`` leaves one out."""
        given = {name.replace("_", "-"): value for name, value in changes.items()}
        headers = [
            (k.encode(), v.encode()) for k, v in {**ALLOWED, **given}.items() if v is not None
        ]
        return await self.client.request(method, path, headers=headers)

    async def published(self) -> list[AccessRecorded]:
        """What the endpoint recorded, once published (the background task's one step)."""
        assert await self.endpoint.recorder.drain() == 0
        events = [codec.decode(topics.ACCESS, value) for value in self.recorded]
        return [e for e in events if isinstance(e, AccessRecorded)]


Starter = Callable[..., AbstractAsyncContextManager[Gate]]


@pytest.fixture
def start_gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Starter:
    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[Gate]:
        broker = KafkaBroker("localhost:1")
        app = create_app(settings_for(tmp_path, **overrides), broker)
        recorded: list[bytes] = []

        async def on_access(body: bytes) -> None:
            recorded.append(body)

        broker.subscriber(topics.ACCESS, decoder=_raw)(on_access)
        grants_log = context_of(app, EnforcementContext).grants_log
        monkeypatch.setattr(grants_log, "fresh", lambda bound_s: True)

        async def caught_up(within_s: float) -> bool:
            return True  # no real broker to ask for the grants log's end offsets

        monkeypatch.setattr(grants_log, "wait_caught_up", caught_up)
        authz_of(app).clock = lambda: NOW
        edge = edge_state(app)
        edge.tokens = TokenBook(edge.tokens.tokens, (NamedToken("gw-east", Role.GATEWAY, "east"),))
        async with TestKafkaBroker(broker) as test_broker:
            value = (GOLDEN / "grant.issued.v1.json").read_bytes()
            await test_broker.publish(value, topics.GRANTS, key=GRANT_ID.encode())
            transport = ASGITransport(app=app)
            async with AsyncClient(transport=transport, base_url="http://enforcement") as client:
                yield Gate(app, test_broker, client, recorded)

    return start


async def _raw(message: Any) -> bytes:
    return bytes(message.body)


@pytest.fixture
async def gate(start_gate: Starter) -> AsyncIterator[Gate]:
    async with start_gate() as started:
        yield started


# --------------------------------------------------------------------------- answers


async def test_an_allowed_access_is_200_with_the_decision_headers(gate: Gate) -> None:
    response = await gate.ask()
    assert response.status_code == 200, response.text
    assert response.headers["x-carveout-decision"] == "allow"
    assert response.headers["x-carveout-grant"] == GRANT_ID
    assert response.headers["x-carveout-grant-version"] == "1"
    assert decode_token(response.headers["x-carveout-consistency"]) == {GRANT_ID: 1}
    assert "x-carveout-event-id" not in response.headers
    assert response.json()["decision"] == "allow"


async def test_a_denied_access_is_403_with_its_violations(gate: Gate) -> None:
    response = await gate.ask(x_carveout_user_country="KP", x_carveout_safeguards="mfa")
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["error"] == "denied"
    assert [v["condition_id"] for v in body["violations"]] == ["countries", "embargo", "safeguards"]
    assert "embargo (user_countries)" in body["message"]
    assert response.headers["x-carveout-decision"] == "deny"
    assert response.headers["x-carveout-violations"] == "countries,embargo,safeguards"
    assert response.headers["x-carveout-grant-version"] == "1"


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
@pytest.mark.parametrize("path", ["/v1/authz", "/v1/authz/", "/v1/authz/v1/models/x?y=1"])
async def test_any_method_and_path_below_the_prefix(gate: Gate, method: str, path: str) -> None:
    response = await gate.ask(path, method)
    assert response.status_code == 200, (method, path, response.text)
    assert response.headers["x-carveout-decision"] == "allow"


async def test_a_grantee_without_a_grant_is_denied(gate: Gate) -> None:
    response = await gate.ask(x_carveout_grantee="org-other")
    assert response.status_code == 403
    [violation] = response.json()["violations"]
    assert (violation["kind"], violation["actual"]) == ("no_active_grant", "unknown")
    assert "x-carveout-grant" not in response.headers


async def test_units_count_against_the_cap_as_the_decision_api_does(gate: Gate) -> None:
    response = await gate.ask(x_carveout_units="1000001")
    assert response.status_code == 200  # the cap is a warning: allowed, and said so
    assert response.headers["x-carveout-violations"] == "cap"


async def test_it_fails_closed_when_stale(gate: Gate, monkeypatch: pytest.MonkeyPatch) -> None:
    grants_log = context_of(gate.app, EnforcementContext).grants_log
    monkeypatch.setattr(grants_log, "fresh", lambda bound_s: False)
    response = await gate.ask()
    assert response.status_code == 403
    assert response.json()["violations"][0]["kind"] == "stale"


# --------------------------------------------------------------------------- the gateway


@pytest.mark.parametrize(
    ("token", "status", "error"),
    [
        (None, 401, "unauthorized"),
        ("nope", 401, "unauthorized"),
        ("", 401, "unauthorized"),
        ("r", 403, "forbidden"),
        ("a", 403, "forbidden"),
    ],
)
async def test_the_gateway_token_comes_first(
    gate: Gate, token: str | None, status: int, error: str
) -> None:
    # Every attribute is wrong too: the token is answered first.
    response = await gate.ask(
        x_carveout_gateway_token=token, x_carveout_units="-1", x_carveout_grantee=None
    )
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert response.headers["x-carveout-error"]
    assert "www-authenticate" not in response.headers


async def test_the_clients_authorization_is_ignored(gate: Gate) -> None:
    # The client's own credentials reach enforcement with the request: never read.
    response = await gate.client.post(
        "/v1/authz/x",
        headers={**ALLOWED, "x-carveout-gateway-token": "nope", "Authorization": "Bearer g"},
    )
    assert response.status_code == 401
    response = await gate.client.post(
        "/v1/authz/x", headers={**ALLOWED, "Authorization": "Bearer nope"}
    )
    assert response.status_code == 200


async def test_a_named_gateway_token_is_its_gateway(gate: Gate) -> None:
    response = await gate.ask(x_carveout_gateway_token="east", x_carveout_gateway=None)
    assert response.status_code == 200, response.text
    response = await gate.ask(x_carveout_gateway_token="east", x_carveout_gateway="gw-west")
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert "gw-east" in response.json()["message"]
    response = await gate.ask(x_carveout_gateway=None)  # the role token names no gateway
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "x-carveout-gateway"


# --------------------------------------------------------------------------- bad attributes


@pytest.mark.parametrize(
    ("changes", "status", "header", "words"),
    [
        ({"x_carveout_user": None}, 422, "x-carveout-user", "required"),
        ({"x_carveout_user": "u" * 201}, 422, "x-carveout-user", "at most 200 characters"),
        ({"x_carveout_grantee": "g" * 20_000}, 422, "x-carveout-grantee", "at most 16384"),
        ({"x_carveout_user_country": "G1"}, 422, "x-carveout-user-country", "pattern"),
        ({"x_carveout_user_country": "GBR"}, 422, "x-carveout-user-country", "pattern"),
        ({"x_carveout_units": "-1"}, 422, "x-carveout-units", "9007199254740991"),
        ({"x_carveout_units": "1e3"}, 422, "x-carveout-units", "9007199254740991"),
        ({"x_carveout_units": str(2**53)}, 422, "x-carveout-units", "9007199254740991"),
        ({"x_carveout_units": "9" * 5000}, 422, "x-carveout-units", "9007199254740991"),
        ({"x_carveout_units": "\u0661\u0662"}, 422, "x-carveout-units", "digits"),  # not ASCII digits
        ({"x_carveout_safeguards": ",".join(["s"] * 65)}, 422, "x-carveout-safeguards", "64"),
        (
            {"x_carveout_safeguards": "s" * 201},
            422,
            "x-carveout-safeguards.0",
            "at most 200 characters",
        ),
        ({"x_carveout_record": "yes"}, 422, "x-carveout-record", "true or false"),
        ({"x_carveout_record": "true"}, 422, "x-carveout-request-id", "retried"),
        ({"x_carveout_min_consistency": "garbage"}, 422, "x-carveout-min-consistency", "token"),
    ],
    ids=lambda value: (
        ",".join(f"{k}={str(v)[:12]}" for k, v in value.items())
        if isinstance(value, dict)
        else None
    ),
)
async def test_a_bad_attribute_names_its_header_and_limit(
    gate: Gate, changes: dict[str, Any], status: int, header: str, words: str
) -> None:
    response = await gate.ask(**changes)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == "invalid_request"
    assert body["errors"][0]["field"] == header, body
    assert words in body["message"], body
    assert response.headers["x-carveout-error"].startswith(header)


async def test_a_header_sent_twice_or_not_utf8_is_400(gate: Gate) -> None:
    raw = [(k.encode(), v.encode()) for k, v in ALLOWED.items()]
    twice = await gate.client.post("/v1/authz/", headers=[*raw, (b"x-carveout-user", b"u2")])
    assert twice.status_code == 400
    assert twice.json()["errors"][0]["field"] == "x-carveout-user"
    latin = [(k, v) for k, v in raw if k != b"x-carveout-user"] + [(b"x-carveout-user", b"\xff")]
    response = await gate.client.post("/v1/authz/", headers=latin)
    assert response.status_code == 400
    assert "UTF-8" in response.json()["message"]


async def test_repeated_safeguards_lines_read_as_one_list(gate: Gate) -> None:
    raw = [(k.encode(), v.encode()) for k, v in ALLOWED.items() if k != "x-carveout-safeguards"]
    lines = [(b"x-carveout-safeguards", b"access_logging"), (b"x-carveout-safeguards", b"mfa")]
    response = await gate.client.get("/v1/authz/", headers=raw + lines)
    assert response.status_code == 200, response.text


async def test_too_many_carveout_lines_are_refused(gate: Gate) -> None:
    raw = [(k.encode(), v.encode()) for k, v in ALLOWED.items()]
    flood = [(b"x-carveout-safeguards", b"mfa")] * 100
    response = await gate.client.get("/v1/authz/", headers=raw + flood)
    assert response.status_code == 400
    assert "at most 64" in response.json()["message"]


async def test_padded_or_lower_case_values_read_as_the_contract_does(gate: Gate) -> None:
    response = await gate.ask(
        x_carveout_user_country="gb", x_carveout_safeguards=" mfa ,access_logging,"
    )
    assert response.status_code == 200, response.text


header_values = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=300,
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    changes=st.dictionaries(
        st.sampled_from(
            [name.replace("-", "_") for name in ALLOWED if name != "x-carveout-gateway-token"]
            + ["x_carveout_record", "x_carveout_request_id", "x_carveout_min_consistency"]
        ),
        header_values | st.none(),
    )
)
async def test_no_header_value_is_a_server_error(gate: Gate, changes: dict[str, Any]) -> None:
    response = await gate.ask(**changes)
    assert response.status_code in {200, 400, 403, 422}, response.text
    body = response.json()
    assert body.get("decision") or body["error"]


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


# --------------------------------------------------------------------------- the document


async def test_the_endpoint_is_documented(gate: Gate) -> None:
    document = (await gate.client.get("/openapi.json")).json()
    operation = document["paths"]["/v1/authz/{path}"]["get"]
    assert operation["security"] == [{"gatewayToken": []}]
    names = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
    assert {"x-carveout-grantee", "x-carveout-safeguards", "x-carveout-record"} <= names
    denied = operation["responses"]["403"]["content"]["application/json"]["schema"]
    assert denied == {"$ref": "#/components/schemas/AuthzRefusal"}
    assert document["components"]["securitySchemes"]["gatewayToken"]["in"] == "header"


class Upload:
    """A request body sent chunk by chunk, recording how much of it the server took."""

    def __init__(self, total: int, chunk: int = 64 * 1024) -> None:
        self.total, self.chunk, self.sent = total, chunk, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.sent < self.total:
            self.sent += self.chunk
            yield b" " * self.chunk


@pytest.mark.parametrize("token", ["g", "nope"])
async def test_a_body_is_never_read_and_a_large_one_closes_the_connection(
    gate: Gate, token: str
) -> None:
    upload = Upload(8 * 1024 * 1024)
    headers = {**ALLOWED, "x-carveout-gateway-token": token}
    response = await gate.client.post("/v1/authz/upload", content=upload, headers=headers)
    assert response.status_code == (200 if token == "g" else 401)
    assert upload.sent == 0
    assert response.headers["connection"] == "close"
    small = await gate.client.post("/v1/authz/upload", content=b"{}", headers=headers)
    assert "connection" not in small.headers


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
