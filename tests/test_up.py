"""``carveout up`` end to end: the broker, three services, a grant that propagates, a restart."""

from __future__ import annotations

import os
import signal
import stat
from typing import Any

import pytest

from .system import System, wait_for

pytestmark = pytest.mark.broker


def issue(system: System, grant: dict[str, Any]) -> dict[str, Any]:
    response = system.call("grant", "POST", "/v1/grants", json=grant)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def visible_in_enforcement(system: System, grant_id: str) -> dict[str, Any] | None:
    response = system.call("enforcement", "GET", f"/v1/grants/{grant_id}", role="auditor")
    return response.json() if response.status_code == 200 else None


def known_to_notification(system: System, grant_id: str) -> dict[str, Any] | None:
    response = system.call("notification", "GET", f"/v1/grants/{grant_id}/contacts")
    return response.json() if response.status_code == 200 else None


def test_tokens_are_generated_private_and_printed(system: System) -> None:
    tokens_file = system.var_dir / "tokens.json"
    assert set(system.tokens()) == {"regulator", "gateway", "auditor"}
    assert stat.S_IMODE(os.stat(tokens_file).st_mode) == 0o600
    tokens = system.tokens().values()
    # The summary is printed line by line: wait for its last line, the last token.
    wait_for(lambda: all(token in system.output() for token in tokens), 5, "the tokens printed")
    output = system.output()
    for token in tokens:
        assert token in output


def test_demo_grant_is_issued_and_reaches_enforcement_within_a_second(
    system: System, demo_grant: dict[str, Any]
) -> None:
    grant = issue(system, demo_grant)
    assert grant["grant_id"].startswith("grt_")
    assert (grant["version"], grant["status"]) == (1, "active")
    assert grant["issued_by"] == "regulator"
    assert grant["consistency_token"]

    seen = wait_for(
        lambda: visible_in_enforcement(system, grant["grant_id"]), 1.0, "grant in enforcement"
    )
    assert seen["grantee_id"] == "org-netsec"
    assert [c["id"] for c in seen["conditions"]] == [c["id"] for c in demo_grant["conditions"]]

    contacts = wait_for(
        lambda: known_to_notification(system, grant["grant_id"]), 2.0, "grant contacts"
    )
    assert contacts["contacts"] == demo_grant["grantee"]["contacts"]


def test_bad_requests_get_clear_json_errors(system: System, demo_grant: dict[str, Any]) -> None:
    without_model = {k: v for k, v in demo_grant.items() if k != "model_id"}
    response = system.call("grant", "POST", "/v1/grants", json=without_model)
    assert response.status_code == 422
    assert "model_id" in response.json()["message"]

    response = system.call("grant", "POST", "/v1/grants", role=None, json=demo_grant)
    assert response.status_code == 401
    assert "bearer" in response.json()["message"].lower()

    response = system.call("grant", "POST", "/v1/grants", role="gateway", json=demo_grant)
    assert response.status_code == 403
    assert "regulator" in response.json()["message"]

    before = system.call("grant", "GET", "/v1/grants", role="auditor").json()["total"]
    assert system.call("grant", "GET", "/v1/grants", role="auditor").json()["total"] == before


def test_health_readiness_and_metrics_answer(system: System) -> None:
    for service in ("grant", "enforcement", "notification"):
        assert system.call(service, "GET", "/healthz", role=None).json() == {"status": "alive"}
        ready = system.call(service, "GET", "/readyz", role=None)
        assert ready.status_code == 200, ready.text
        assert system.call(service, "GET", "/metrics", role=None).status_code == 200


def test_a_service_that_dies_is_restarted(system: System, demo_grant: dict[str, Any]) -> None:
    pid_file = system.var_dir / "run" / "enforcement.pid"
    old_pid = int(pid_file.read_text())
    os.kill(old_pid, signal.SIGKILL)

    wait_for(lambda: int(pid_file.read_text()) != old_pid, 10, "a new enforcement process")
    wait_for(
        lambda: system.call("enforcement", "GET", "/readyz", role=None).status_code == 200,
        30,
        "enforcement ready again",
    )
    assert "enforcement exited with code -9; restarting" in system.output()
    grant = issue(system, demo_grant)
    wait_for(lambda: visible_in_enforcement(system, grant["grant_id"]), 2.0, "grant after restart")


def test_restart_comes_back_consistent(system: System, demo_grant: dict[str, Any]) -> None:
    before = issue(system, demo_grant)
    wait_for(lambda: visible_in_enforcement(system, before["grant_id"]), 1.0, "first grant")

    assert system.stop() == 0
    system.start()

    kept = visible_in_enforcement(system, before["grant_id"])
    assert kept is not None and kept["version"] == 1
    listed = system.call("grant", "GET", "/v1/grants", role="auditor").json()
    assert before["grant_id"] in [g["grant_id"] for g in listed["items"]]

    after = issue(system, {**demo_grant, "carveout_id": "co-after-restart"})
    seen = wait_for(
        lambda: visible_in_enforcement(system, after["grant_id"]), 1.0, "grant after restart"
    )
    assert seen["carveout_id"] == "co-after-restart"
