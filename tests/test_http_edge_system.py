"""The HTTP edge on the running system (`carveout up`, real broker, real HTTP server):
tokens before bodies, body limits before reading, least privilege, named gateway tokens,
owner-only files (DESIGN §10)."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .system import System

NAMED_GATEWAY = {"name": "gw-east", "role": "gateway", "token": "co_gw_east_test_token"}
MUTATING = {"post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def edge_system(
    tmp_path_factory: pytest.TempPathFactory, kafka_container_bootstrap: str | None
) -> Iterator[System]:
    """The system, with a token file that also holds a named gateway token."""
    var = tmp_path_factory.mktemp("var")
    tokens = {
        "regulator": "co_reg_test_token",
        "gateway": "co_gat_test_token",
        "auditor": "co_aud_test_token",
        "named": [NAMED_GATEWAY],
    }
    fd = os.open(var / "tokens.json", os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(tokens, out)
    running = System(
        var,
        external_bootstrap=os.environ.get("CARVEOUT_KAFKA_BOOTSTRAP") or kafka_container_bootstrap,
    )
    running.start()
    try:
        yield running
    finally:
        running.stop()


def send(system: System, service: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, system.url(service) + path, timeout=10, **kwargs)


def test_no_token_is_401_on_every_mutating_route_whatever_the_body(edge_system: System) -> None:
    for service in ("grant", "enforcement", "notification"):
        document = edge_system.call(service, "GET", "/openapi.json", role=None).json()
        routes = [
            (method, re.sub(r"\{[^}]+\}", "x", path))
            for path, methods in document["paths"].items()
            for method in methods
            if method in MUTATING
        ]
        assert routes, service
        for method, path in routes:
            response = send(
                edge_system,
                service,
                method.upper(),
                path,
                content=b'{"not": json',
                headers={"content-type": "application/json"},
            )
            assert response.status_code == 401, (service, method, path, response.text)
            assert response.json()["error"] == "unauthorized"
            assert response.headers["www-authenticate"] == "Bearer"


def _answer_to_a_partial_upload(system: System, path: str, token: str, head: bytes) -> bytes:
    """Send the request line, headers and a first piece of the body, never the rest, and
    read the answer: it can only come from a server that did not wait for the whole body."""
    port = int(system.url("grant").rsplit(":", 1)[1])
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\n"
    ).encode() + head
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def test_an_8_mib_body_is_refused_before_it_is_sent(edge_system: System) -> None:
    token = edge_system.tokens()["regulator"]
    head = f"Content-Length: {8 * 1024 * 1024}\r\n\r\n".encode() + b"{" + b" " * 1023
    answer = _answer_to_a_partial_upload(edge_system, "/v1/grants", token, head)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    body = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert body == {
        "error": "payload_too_large",
        "message": "request body is over the limit of 262144 bytes (CARVEOUT_HTTP_BODY_MAX_BYTES)",
    }


def test_a_chunked_body_is_cut_off_at_the_limit(edge_system: System) -> None:
    token = edge_system.tokens()["regulator"]
    piece = b" " * 8192
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(33))  # 264 KiB
    head = b"Transfer-Encoding: chunked\r\n\r\n" + chunks
    answer = _answer_to_a_partial_upload(edge_system, "/v1/grants", token, head)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"CARVEOUT_HTTP_BODY_MAX_BYTES" in answer


# Least privilege (DESIGN §10): listings a gateway token may not read.
GATEWAY_MAY_NOT_READ = [
    ("grant", "/v1/grants"),
    ("enforcement", "/v1/decisions"),
    ("enforcement", "/v1/breaches"),
    ("notification", "/v1/notifications"),
    ("notification", "/v1/subscriptions"),
    ("notification", "/v1/grants/grt_x/contacts"),
]


@pytest.mark.parametrize(("service", "path"), GATEWAY_MAY_NOT_READ)
def test_a_gateway_token_cannot_read_listings(edge_system: System, service: str, path: str) -> None:
    response = edge_system.call(service, "GET", path, role="gateway")
    assert response.status_code == 403, response.text
    # ... which regulators and auditors may (a grant unknown to the service is a 404)
    expected = 404 if "grt_x" in path else 200
    assert edge_system.call(service, "GET", path, role="auditor").status_code == expected


def test_a_named_gateway_token_speaks_only_for_its_gateway(
    edge_system: System, demo_grant: dict[str, Any]
) -> None:
    access = {
        "grantee_id": demo_grant["grantee"]["id"],
        "model_id": demo_grant["model_id"],
        "request_id": "req-edge-1",
        "user_id": "user-1",
        "user_country": "US",
        "deployment_region": "us-east",
        "purpose": "vulnerability-scanning",
        "safeguards": ["access_logging", "mfa"],
        "units": 10,
    }
    named = {"Authorization": f"Bearer {NAMED_GATEWAY['token']}"}
    for path in ("/v1/access", "/v1/decisions"):
        body = {**access, "gateway_id": "gw-west"}
        response = send(edge_system, "enforcement", "POST", path, json=body, headers=named)
        assert response.status_code == 403, (path, response.text)
        assert "'gw-west'" in response.json()["message"]
        assert "'gw-east'" in response.json()["message"]
    response = send(edge_system, "enforcement", "POST", "/v1/access", json=access, headers=named)
    assert response.status_code == 202, response.text


def test_var_and_store_files_are_the_owners_only(edge_system: System) -> None:
    assert stat.S_IMODE(edge_system.var_dir.stat().st_mode) == 0o700
    stores = sorted(edge_system.var_dir.glob("*.db*"))
    assert {p.name for p in stores} >= {"grant.db", "enforcement.db", "notification.db"}
    for store in stores:
        assert stat.S_IMODE(store.stat().st_mode) == 0o600, store
