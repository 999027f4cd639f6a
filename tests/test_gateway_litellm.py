"""A real LiteLLM proxy (``litellm --config ...``) with Carveout's callback, a mocked model
(``mock_response``: no network) and the real system behind it (DESIGN §14).

An allowed call is answered and its tokens recorded as an access.recorded event's units;
a denied call is refused with 403 and Carveout's violations; and with Kafka unreachable
the call's access still reaches enforcement, by POST /v1/access.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from carveout_contracts.events.access import access_event_id
from carveout_ops.broker import free_port

from .system import System, wait_for
from .test_enforcement import decisions, issue

pytestmark = pytest.mark.broker

LITELLM = shutil.which("litellm", path=str(Path(sys.executable).parent)) or shutil.which("litellm")
if importlib.util.find_spec("litellm") is None or LITELLM is None:
    pytest.skip(
        "LiteLLM is not installed: pip install 'carveout[litellm]' (litellm[proxy])",
        allow_module_level=True,
    )

GRANTEE = "org-litellm"
MASTER_KEY = "sk-carveout-test-0123456789abcdef"
MOCK_ANSWER = "Scanned: no vulnerabilities found."
CONFIG = f"""
model_list:
  - model_name: mythos-preview
    litellm_params:
      model: openai/mythos-preview
      api_key: not-used
      mock_response: "{MOCK_ANSWER}"
litellm_settings:
  callbacks: carveout_litellm.callback.proxy_handler
"""
HEADERS = {
    "Authorization": f"Bearer {MASTER_KEY}",
    "x-carveout-grantee": GRANTEE,
    "x-carveout-user": "analyst-3",
    "x-carveout-user-country": "US",
    "x-carveout-purpose": "vulnerability-scanning",
    "x-carveout-safeguards": "access_logging, mfa",
}
BODY = {"model": "mythos-preview", "messages": [{"role": "user", "content": "scan repo x"}]}


@pytest.fixture(scope="module")
def granted(system: System, demo_grant: dict[str, Any]) -> dict[str, Any]:
    return issue(system, demo_grant, GRANTEE)


@pytest.fixture(scope="module")
def demo_grant() -> dict[str, Any]:
    path = Path(__file__).resolve().parents[1] / "examples" / "demo-grant.json"
    grant: dict[str, Any] = json.loads(path.read_text())
    return grant


Starter = Callable[[str], str]


@pytest.fixture(scope="module")
def start_proxy(system: System, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Starter]:
    """Start a LiteLLM proxy with the callback, publishing to ``kafka``; its URL."""
    started: list[subprocess.Popen[bytes]] = []
    folder = tmp_path_factory.mktemp("litellm")
    (folder / "config.yaml").write_text(CONFIG)

    def start(kafka: str) -> str:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CARVEOUT_", "LITELLM_"))}
        env.update(
            CARVEOUT_ENFORCEMENT_URL=system.url("enforcement"),
            CARVEOUT_GATEWAY_TOKEN=system.tokens()["gateway"],
            CARVEOUT_KAFKA_BOOTSTRAP=kafka,
            CARVEOUT_GATEWAY_ID="litellm-test",
            CARVEOUT_GATEWAY_REGION="us-east",
            LITELLM_MASTER_KEY=MASTER_KEY,
            LITELLM_LOCAL_MODEL_COST_MAP="True",  # no fetching of prices: no network here
            LITELLM_TELEMETRY="False",
        )
        log = open(folder / f"proxy-{port}.log", "wb")  # noqa: SIM115 - closed with the process
        command = [LITELLM, "--config", str(folder / "config.yaml"), "--host", "127.0.0.1"]
        process = subprocess.Popen(
            [*command, "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        started.append(process)
        url = f"http://127.0.0.1:{port}"

        def alive() -> bool:
            if process.poll() is not None:
                raise AssertionError((folder / f"proxy-{port}.log").read_text()[-3000:])
            try:
                return httpx.get(url + "/health/liveliness", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(alive, 120, "the LiteLLM proxy up", every=0.25)
        return url

    try:
        yield start
    finally:
        for process in started:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="module")
def proxy(system: System, start_proxy: Starter, granted: dict[str, Any]) -> str:
    return start_proxy(system.bootstrap)


def call(proxy: str, request_id: str, **changes: str) -> httpx.Response:
    headers = {**HEADERS, "x-carveout-request-id": request_id}
    headers.update({k.replace("_", "-"): v for k, v in changes.items()})
    return httpx.post(proxy + "/v1/chat/completions", json=BODY, headers=headers, timeout=30)


def recorded(system: System, request_id: str) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        return next((d for d in decisions(system, GRANTEE) if d["request_id"] == request_id), None)

    return wait_for(found, 20, f"the access of {request_id} recorded")


def test_an_allowed_call_is_answered_and_its_tokens_recorded(system: System, proxy: str) -> None:
    response = call(proxy, "litellm-allowed-1")
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["choices"][0]["message"]["content"] == MOCK_ANSWER
    tokens = answer["usage"]["total_tokens"]
    assert tokens > 0
    access = recorded(system, "litellm-allowed-1")
    assert access["access_event_id"] == str(access_event_id("litellm-test", "litellm-allowed-1"))
    assert (access["decision"], access["units"]) == ("allow", tokens)
    assert (access["model_id"], access["user_id"]) == ("mythos-preview", "analyst-3")
    assert access["gateway_id"] == "litellm-test"


def test_a_denied_call_is_refused_with_the_violations(system: System, proxy: str) -> None:
    response = call(proxy, "litellm-denied-1", x_carveout_user_country="KP")
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert "refused by Carveout" in error["message"]
    assert "embargo (user_countries)" in error["message"]
    fields = error["provider_specific_fields"]
    assert fields["reason"] == "denied"
    assert [v["condition_id"] for v in fields["violations"]] == ["countries", "embargo"]
    # A refused call is no access: nothing is recorded for it. The next call's record,
    # on the same partition after it, shows the refused one never came.
    assert call(proxy, "litellm-after-denied").status_code == 200
    recorded(system, "litellm-after-denied")
    assert not [d for d in decisions(system, GRANTEE) if d["request_id"] == "litellm-denied-1"]


def test_a_call_without_the_attributes_is_a_400_naming_them(proxy: str) -> None:
    response = call(proxy, "litellm-bad-1", x_carveout_user_country="", x_carveout_units="lots")
    assert response.status_code == 400, response.text
    assert "x-carveout-units" in response.json()["error"]["message"]
    headers = {k: v for k, v in HEADERS.items() if k != "x-carveout-user-country"}
    response = httpx.post(proxy + "/v1/chat/completions", json=BODY, headers=headers, timeout=30)
    assert response.status_code == 400, response.text
    assert "user_country" in response.json()["error"]["message"]


def test_with_kafka_down_the_access_goes_by_http(
    system: System, start_proxy: Starter, granted: dict[str, Any]
) -> None:
    unreachable = f"127.0.0.1:{free_port()}"  # nothing listens there
    proxy = start_proxy(unreachable)
    response = call(proxy, "litellm-no-kafka-1")
    assert response.status_code == 200, response.text
    access = recorded(system, "litellm-no-kafka-1")
    assert access["units"] == response.json()["usage"]["total_tokens"]
