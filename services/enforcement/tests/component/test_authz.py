"""``/v1/authz/``, the external-authorization endpoint (DESIGN §14), in one process: its
answers, the gateway's token, and the attributes its headers carry."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carveout_contracts.consistency import decode_token
from carveout_enforcement.context import EnforcementContext
from carveout_runtime.composition import context_of

from .authz_gate import ALLOWED, GRANT_ID, Gate, Starter, open_gate


@pytest.fixture
def start_gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Starter:
    return functools.partial(open_gate, tmp_path, monkeypatch)


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
        (
            {"x_carveout_units": "\u0661\u0662"},
            422,
            "x-carveout-units",
            "digits",
        ),  # not ASCII digits
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
