"""A real nginx (Debian's package) running examples/nginx/carveout.conf between a client and
a stub model API, with the real system behind it (DESIGN §14).

Allowed users reach the model; embargoed users are refused with 403 and Carveout's
violations without reaching it; every request is recorded once, even when retried with
the same request id; and the latency nginx plus Carveout add is measured and reported.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from carveout_ops.broker import free_port

from .system import System, wait_for
from .test_enforcement import decisions, issue

pytestmark = pytest.mark.broker

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "nginx" / "carveout.conf"
NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
)
GRANTEE = "org-nginx"
CLIENT = {
    "x-carveout-grantee": GRANTEE,
    "x-carveout-model": "mythos-preview",
    "x-carveout-user": "analyst-7",
    "x-carveout-user-country": "GB",
    "x-carveout-purpose": "vulnerability-scanning",
    "x-carveout-safeguards": "access_logging,mfa",
    "x-carveout-units": "300",
    "Authorization": "Bearer the-clients-own-model-api-key",
}


@dataclass
class ModelApi:
    """A stub model API: answers every request, remembering what reached it."""

    server: ThreadingHTTPServer
    seen: list[dict[str, str]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture(scope="module")
def model_api() -> Iterator[ModelApi]:
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out at once, as a server's would

        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            self.rfile.read(length)
            seen.append({k.lower(): v for k, v in self.headers.items()} | {"path": self.path})
            body = json.dumps({"choices": [{"message": {"content": "scanned"}}]}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: pytest shows failures, not every request

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ModelApi(server, seen)
    finally:
        server.shutdown()
        server.server_close()


def configure(example: str, replacements: dict[str, str]) -> str:
    """The example with this test's ports and token: each line it changes must be there once."""
    for old, new in replacements.items():
        assert example.count(old) == 1, f"{old!r} is not once in {EXAMPLE}"
        example = example.replace(old, new)
    return example


@pytest.fixture(scope="module")
def gateway(
    system: System, model_api: ModelApi, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """nginx with the example configuration, in front of ``model_api``; its URL."""
    if NGINX is None:
        pytest.skip("nginx is not installed: Debian's package 'nginx' (apt-get install nginx)")
    prefix = tmp_path_factory.mktemp("nginx")
    port = free_port()
    site = configure(
        EXAMPLE.read_text(),
        {
            "server 127.0.0.1:8082;": f"server 127.0.0.1:{system.ports['enforcement']};",
            "server 127.0.0.1:8000;": f"server {model_api.url.removeprefix('http://')};",
            "listen 8088;": f"listen 127.0.0.1:{port};",
            '"CARVEOUT_GATEWAY_TOKEN"': json.dumps(system.tokens()["gateway"]),
        },
    )
    (prefix / "carveout.conf").write_text(site)
    for temp in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / temp).mkdir()
    # As root, workers would switch to 'nobody', who may not enter the test's folder.
    user = "user root;" if os.geteuid() == 0 else ""
    (prefix / "nginx.conf").write_text(
        f"""{user}
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/carveout.conf;
}}
"""
    )
    command = [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf")]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"

    def listening() -> bool:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            httpx.get(url + "/_carveout/authz", timeout=1)  # internal: 404, but it answers
        except httpx.TransportError:
            return False
        return True

    try:
        wait_for(listening, 10, "nginx listening")
        yield url
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module")
def granted(system: System, demo_grant: dict[str, Any]) -> dict[str, Any]:
    return issue(system, demo_grant, GRANTEE)


@pytest.fixture(scope="module")
def demo_grant() -> dict[str, Any]:
    path = Path(__file__).resolve().parents[1] / "examples" / "demo-grant.json"
    grant: dict[str, Any] = json.loads(path.read_text())
    return grant


def send(gateway: str, request_id: str | None = None, **changes: str) -> httpx.Response:
    headers = {**CLIENT, **{k.replace("_", "-"): v for k, v in changes.items()}}
    if request_id is not None:
        headers["x-carveout-request-id"] = request_id
    return httpx.post(
        gateway + "/v1/chat/completions",
        json={"model": "mythos-preview", "messages": [{"role": "user", "content": "scan"}]},
        headers=headers,
        timeout=10,
    )


def test_an_allowed_user_reaches_the_model(
    gateway: str, model_api: ModelApi, granted: dict[str, Any]
) -> None:
    before = len(model_api.seen)
    response = send(gateway, "nginx-allowed-1")
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "scanned"
    assert response.headers["x-carveout-decision"] == "allow"
    assert response.headers["x-carveout-grant"] == granted["grant_id"]
    [reached] = model_api.seen[before:]
    assert reached["path"] == "/v1/chat/completions"
    assert reached["authorization"] == CLIENT["Authorization"]  # the client's, untouched
    assert "x-carveout-gateway-token" not in reached  # the gateway's token stays in nginx


def test_an_embargoed_user_is_refused_before_the_model(
    gateway: str, model_api: ModelApi, granted: dict[str, Any]
) -> None:
    before = len(model_api.seen)
    response = send(gateway, "nginx-embargoed-1", x_carveout_user_country="KP")
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["error"] == "denied"
    assert body["violations"] == "countries,embargo"
    assert body["grant_id"] == granted["grant_id"]
    assert len(model_api.seen) == before


def test_a_bad_attribute_is_a_400_naming_the_header(
    gateway: str, model_api: ModelApi, granted: dict[str, Any]
) -> None:
    before = len(model_api.seen)
    response = send(gateway, "nginx-bad-1", x_carveout_units="-1")
    assert response.status_code == 400, response.text
    assert response.json()["message"].startswith("x-carveout-units:")
    assert len(model_api.seen) == before


def test_each_request_is_recorded_once_even_when_retried(
    system: System, gateway: str, granted: dict[str, Any]
) -> None:
    answers = [send(gateway, "nginx-retried-1") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert len({a.headers["x-carveout-event-id"] for a in answers}) == 1
    refused = send(gateway, "nginx-retried-2", x_carveout_user_country="KP")
    assert refused.status_code == 403
    # Without a request id of its own, nginx's $request_id tells two requests apart.
    unnamed = [send(gateway) for _ in range(2)]
    ids = {a.headers["x-carveout-event-id"] for a in unnamed}
    assert len(ids) == 2
    # The last request recorded, on the grantee's partition after the others: once it is
    # judged, so is every one before it.
    last = send(gateway, "nginx-retried-last")

    def judged() -> list[dict[str, Any]] | None:
        found = decisions(system, GRANTEE)
        return found if any(d["request_id"] == "nginx-retried-last" for d in found) else None

    found = wait_for(judged, 15, "the last request judged")
    by_request: dict[str, list[str]] = {}
    for item in found:
        by_request.setdefault(item["request_id"], []).append(item["decision"])
    assert by_request["nginx-retried-1"] == ["allow"]
    assert by_request["nginx-retried-2"] == ["deny"]
    assert by_request["nginx-embargoed-1"] == ["deny"]
    events = {item["access_event_id"] for item in found}
    assert ids <= events
    assert last.headers["x-carveout-event-id"] in events
    assert all(item["gateway_id"] == "nginx-gateway" for item in found)
    assert all(item["units"] == 300 for item in found)


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[round(0.99 * (len(ordered) - 1))]


def test_the_latency_nginx_and_carveout_add(
    gateway: str, model_api: ModelApi, granted: dict[str, Any]
) -> None:
    """The same requests straight to the model API and through nginx (each one asked of
    Carveout and recorded); the difference is what the gateway adds. Reported, and held
    to a bound loose enough for a busy two-core machine."""
    body = {"model": "mythos-preview", "messages": [{"role": "user", "content": "scan"}]}
    timings: dict[str, list[float]] = {"direct": [], "nginx": []}
    with httpx.Client(timeout=10) as client:
        for n in range(300):
            for route, base in (("direct", model_api.url), ("nginx", gateway)):
                headers = {**CLIENT, "x-carveout-request-id": f"nginx-latency-{n}"}
                started = time.perf_counter()
                response = client.post(base + "/v1/chat/completions", json=body, headers=headers)
                timings[route].append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, response.text
    direct, through = percentiles(timings["direct"]), percentiles(timings["nginx"])
    added = (through[0] - direct[0], through[1] - direct[1])
    print(
        f"\nnginx + Carveout add p50 {added[0]:.2f} ms, p99 {added[1]:.2f} ms "
        f"(direct p50 {direct[0]:.2f} / p99 {direct[1]:.2f} ms, "
        f"through nginx p50 {through[0]:.2f} / p99 {through[1]:.2f} ms, 300 requests each)"
    )
    assert added[0] < 25, added
