"""The HTTP edge of every service (DESIGN §10): the token before the body, the body's size
before it is read, least privilege, and owner-only store files.

Each service's app is driven in process (httpx's ASGI transport, which pulls a request body
from the client only when the app asks for it, so a test sees how much was read).
"""

from __future__ import annotations

import importlib
import re
import stat
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka import KafkaBroker
from httpx import ASGITransport, AsyncClient

from carveout_contracts.limits import KIB, MIB
from carveout_runtime.auth import NamedToken, Role, TokenBook
from carveout_runtime.edge import edge_state

SERVICES = ["grant", "enforcement", "notification"]
MUTATING = {"post", "put", "patch", "delete"}
GATEWAY = {"Authorization": "Bearer g"}
AUDITOR = {"Authorization": "Bearer a"}
NOT_JSON = b'{"grantee_id": "org-x", '  # cut short: any parse would fail with 422


@asynccontextmanager
async def serve(service: str, tmp_path: Path, **overrides: Any) -> AsyncIterator[AsyncClient]:
    module = importlib.import_module(f"carveout_{service}.app")
    settings_module = importlib.import_module(f"carveout_{service}.settings")
    settings = getattr(settings_module, f"{service.capitalize()}Settings")(
        database_url=f"sqlite:///{tmp_path}/{service}.db",
        regulator_token="r",
        gateway_token="g",
        auditor_token="a",
        kafka_bootstrap="localhost:1",
        **overrides,
    )
    app = module.create_app(settings, KafkaBroker("localhost:1"))
    edge = edge_state(app)
    edge.tokens = TokenBook(edge.tokens.tokens, (NamedToken("gw-east", Role.GATEWAY, "east"),))
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://svc") as client:
        yield client


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            yield method, re.sub(r"\{[^}]+\}", "x", path), operation


class Upload:
    """A request body sent chunk by chunk, recording how much of it the server took."""

    def __init__(self, total: int, chunk: int = 64 * KIB) -> None:
        self.total, self.chunk, self.sent = total, chunk, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.sent < self.total:
            self.sent += self.chunk
            yield b" " * self.chunk


@pytest.mark.parametrize("service", SERVICES)
async def test_every_mutating_route_answers_401_before_parsing_the_body(
    service: str, tmp_path: Path
) -> None:
    async with serve(service, tmp_path) as client:
        document = (await client.get("/openapi.json")).json()
        mutating = [(m, p) for m, p, _ in operations(document) if m in MUTATING]
        assert mutating, "the service documents no mutating route"
        for method, path in mutating:
            headers = {"content-type": "application/json"}
            response = await client.request(method, path, content=NOT_JSON, headers=headers)
            assert response.status_code == 401, (method, path, response.text)
            assert response.json()["error"] == "unauthorized"
            assert response.headers["www-authenticate"] == "Bearer"
            wrong = {**headers, "Authorization": "Bearer nope"}
            response = await client.request(method, path, content=NOT_JSON, headers=wrong)
            assert response.status_code == 401, (method, path, response.text)
            # An auditor reads; no mutating route admits it, and it learns nothing of the body.
            reader = {**headers, **AUDITOR}
            response = await client.request(method, path, content=NOT_JSON, headers=reader)
            assert response.status_code == 403, (method, path, response.text)
            assert response.json()["error"] == "forbidden"


@pytest.mark.parametrize("service", SERVICES)
async def test_the_openapi_documents_bearer_auth_on_every_api_route(
    service: str, tmp_path: Path
) -> None:
    async with serve(service, tmp_path) as client:
        document = (await client.get("/openapi.json")).json()
    scheme = document["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for method, path, operation in operations(document):
        if path.startswith("/v1/authz/"):
            # Envoy and nginx forward the client's Authorization: the gateway's token
            # travels in a header of its own (DESIGN §14).
            assert operation.get("security") == [{"gatewayToken": []}], (method, path)
        elif path.startswith("/v1/"):
            assert operation.get("security") == [{"bearer": []}], (method, path)


# (service, method, path, the setting that limits its body, the limit)
LIMITED = [
    ("grant", "POST", "/v1/grants", "CARVEOUT_HTTP_BODY_MAX_BYTES", 256 * KIB),
    ("notification", "POST", "/v1/subscriptions", "CARVEOUT_HTTP_BODY_MAX_BYTES", 256 * KIB),
    ("enforcement", "POST", "/v1/access", "CARVEOUT_ENFORCEMENT_ACCESS_BODY_MAX_BYTES", 4 * MIB),
    (
        "enforcement",
        "POST",
        "/v1/decisions",
        "CARVEOUT_ENFORCEMENT_DECISION_BODY_MAX_BYTES",
        64 * KIB,
    ),
]
TOKEN_FOR = {"/v1/grants": "r", "/v1/subscriptions": "r", "/v1/access": "g", "/v1/decisions": "g"}


@pytest.mark.parametrize(("service", "method", "path", "setting", "limit"), LIMITED)
async def test_a_body_declared_over_the_limit_is_refused_unread(
    service: str, method: str, path: str, setting: str, limit: int, tmp_path: Path
) -> None:
    upload = Upload(8 * MIB)
    headers = {"Authorization": f"Bearer {TOKEN_FOR[path]}", "content-length": str(8 * MIB)}
    async with serve(service, tmp_path) as client:
        response = await client.request(method, path, content=upload, headers=headers)
    assert response.status_code == 413, response.text
    assert response.json() == {
        "error": "payload_too_large",
        "message": f"request body is over the limit of {limit} bytes ({setting})",
    }
    assert upload.sent == 0


@pytest.mark.parametrize(("service", "method", "path", "setting", "limit"), LIMITED)
async def test_a_streamed_body_is_cut_off_at_the_limit(
    service: str, method: str, path: str, setting: str, limit: int, tmp_path: Path
) -> None:
    upload = Upload(8 * MIB)
    headers = {"Authorization": f"Bearer {TOKEN_FOR[path]}"}  # no length: chunked
    async with serve(service, tmp_path) as client:
        response = await client.request(method, path, content=upload, headers=headers)
    assert response.status_code == 413, response.text
    assert response.json()["error"] == "payload_too_large"
    assert setting in response.json()["message"]
    assert upload.sent <= limit + upload.chunk, f"read {upload.sent} bytes of 8 MiB"


async def test_the_body_limit_is_a_setting(tmp_path: Path) -> None:
    async with serve("grant", tmp_path, http_body_max_bytes=4 * KIB) as client:
        response = await client.post(
            "/v1/grants", content=b" " * (4 * KIB + 1), headers={"Authorization": "Bearer r"}
        )
    assert response.status_code == 413
    assert "4096 bytes (CARVEOUT_HTTP_BODY_MAX_BYTES)" in response.json()["message"]


async def test_no_token_beats_a_too_large_body(tmp_path: Path) -> None:
    async with serve("grant", tmp_path) as client:
        response = await client.post("/v1/grants", content=Upload(8 * MIB))
    assert response.status_code == 401


# Least privilege (DESIGN §10): what a gateway token may not read.
GATEWAY_MAY_NOT_READ = [
    ("grant", "/v1/grants"),
    ("grant", "/v1/grants/grt_x"),
    ("enforcement", "/v1/decisions"),
    ("enforcement", "/v1/breaches"),
    ("notification", "/v1/notifications"),
    ("notification", "/v1/subscriptions"),
    ("notification", "/v1/grants/grt_x/contacts"),
]


@pytest.mark.parametrize(("service", "path"), GATEWAY_MAY_NOT_READ)
async def test_a_gateway_token_reads_no_listing(service: str, path: str, tmp_path: Path) -> None:
    async with serve(service, tmp_path) as client:
        for token in ("g", "east"):  # the role token and a named gateway token
            response = await client.get(path, headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 403, response.text
            assert "gateway" in response.json()["message"]


async def test_a_gateway_reads_grants_as_enforcement_sees_them(tmp_path: Path) -> None:
    async with serve("enforcement", tmp_path) as client:
        response = await client.get("/v1/grants/grt_x", headers=GATEWAY)
    assert response.status_code == 404  # admitted: the grant is just not known


def modes(directory: Path, pattern: str) -> dict[str, int]:
    return {f.name: stat.S_IMODE(f.stat().st_mode) for f in directory.glob(pattern)}


@pytest.mark.parametrize("service", SERVICES)
async def test_store_files_are_the_owners_only(service: str, tmp_path: Path) -> None:
    async with serve(service, tmp_path) as client:
        assert (await client.get("/healthz")).status_code == 200
        found = modes(tmp_path, f"{service}.db*")  # with the store open: -wal and -shm too
    assert f"{service}.db" in found
    assert found == dict.fromkeys(found, 0o600)


async def test_a_listing_refuses_a_filter_it_does_not_take_or_one_given_twice(
    tmp_path: Path,
) -> None:
    async with serve("enforcement", tmp_path) as client:
        for query, words in [
            ("grantee=org-a", "unknown query parameter"),
            ("grantee_id=org-a&grantee_id=org-b", "given 2 times; it takes one"),
        ]:
            response = await client.get(f"/v1/decisions?{query}", headers=AUDITOR)
            assert response.status_code == 422, response.text
            assert words in response.json()["message"]
        response = await client.get("/v1/decisions?grantee_id=org-a&limit=5", headers=AUDITOR)
        assert response.status_code == 200
