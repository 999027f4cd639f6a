"""The console against faked services: sign-in and its cookie, CSRF, and what each role
may see and do."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from carveout_console.app import create_app
from carveout_console.settings import ConsoleSettings

from .fake_services import GRANT_ID, TOKENS, FakeServices

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def services() -> FakeServices:
    return FakeServices()


@pytest.fixture
def console(services: FakeServices) -> Iterator[TestClient]:
    app = create_app(ConsoleSettings(), transport=httpx.MockTransport(services))
    with TestClient(app, base_url="http://127.0.0.1:8080", follow_redirects=False) as client:
        yield client


def csrf_of(page: httpx.Response) -> str:
    found = CSRF.search(page.text)
    assert found, page.text
    return found.group(1)


def sign_in(console: TestClient, role: str, next_path: str = "/grants") -> httpx.Response:
    csrf = csrf_of(console.get("/signin"))
    return console.post(
        "/signin", data={"token": TOKENS[role], "csrf_token": csrf, "next": next_path}
    )


def test_signing_in_sets_an_http_only_strict_cookie_that_is_not_the_token(
    console: TestClient,
) -> None:
    answer = sign_in(console, "regulator")
    assert answer.status_code == 303 and answer.headers["location"] == "/grants"
    cookie = next(c for c in answer.headers.get_list("set-cookie") if "carveout_session" in c)
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert TOKENS["regulator"] not in cookie
    page = console.get("/grants")
    assert page.status_code == 200 and "Issue a grant" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]


def test_pages_need_a_session(console: TestClient) -> None:
    answer = console.get(f"/grants/{GRANT_ID}")
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/signin?next=/grants/{GRANT_ID}"
    assert console.post("/grants/new", data={}).status_code == 403


def test_a_gateway_token_cannot_sign_in_and_an_unknown_one_neither(console: TestClient) -> None:
    refused = sign_in(console, "gateway")
    assert refused.status_code == 403
    assert "Gateway tokens cannot sign in" in refused.text
    assert "carveout_session" not in refused.headers.get("set-cookie", "")
    csrf = csrf_of(console.get("/signin"))
    unknown = console.post("/signin", data={"token": "nope", "csrf_token": csrf})
    assert unknown.status_code == 401


def test_the_sign_in_form_needs_its_csrf_token(console: TestClient) -> None:
    console.get("/signin")
    answer = console.post("/signin", data={"token": TOKENS["regulator"], "csrf_token": "forged"})
    assert answer.status_code == 403
    assert "carveout_session" not in answer.headers.get("set-cookie", "")


def test_sign_in_goes_back_only_to_a_page_of_the_console(console: TestClient) -> None:
    assert sign_in(console, "auditor", "//elsewhere.example/x").headers["location"] == "/grants"


@pytest.mark.parametrize("csrf", [None, "forged"])
def test_a_form_without_its_csrf_token_is_refused(
    console: TestClient, services: FakeServices, csrf: str | None
) -> None:
    sign_in(console, "regulator")
    form = {"reason": "r", "confirmed": "yes"} | ({"csrf_token": csrf} if csrf else {})
    assert console.post(f"/grants/{GRANT_ID}/revoke", data=form).status_code == 403
    assert console.post("/signout", data={}).status_code == 403
    assert not [c for c in services.calls if c[1] == "POST" and c[2].endswith("/revoke")]


def test_an_auditor_reads_and_has_no_control_to_act(
    console: TestClient, services: FakeServices
) -> None:
    sign_in(console, "auditor")
    page = console.get(f"/grants/{GRANT_ID}")
    assert page.status_code == 200 and "read-only" in page.text
    for control in ("Revoke", "Suspend", "Amend", "Issue a grant"):
        assert control not in page.text
    csrf = csrf_of(page)
    assert console.get(f"/grants/{GRANT_ID}/revoke").status_code == 403
    posted = {"reason": "r", "confirmed": "yes", "csrf_token": csrf}
    assert console.post(f"/grants/{GRANT_ID}/revoke", data=posted).status_code == 403
    assert console.post("/deadletters/abc/redrive", data=posted).status_code == 403
    assert not [c for c in services.calls if c[1] == "POST" and c[2].endswith("/revoke")]


def test_a_regulator_revokes_after_confirming_and_waits_for_propagation(
    console: TestClient, services: FakeServices
) -> None:
    sign_in(console, "regulator")
    csrf = csrf_of(console.get(f"/grants/{GRANT_ID}/revoke"))
    confirm = console.post(f"/grants/{GRANT_ID}/revoke", data={"reason": "KP", "csrf_token": csrf})
    assert confirm.status_code == 200 and "Confirm: Revoke grant" in confirm.text
    assert not [c for c in services.calls if c[2].endswith("/revoke")]
    done = console.post(
        f"/grants/{GRANT_ID}/revoke", data={"reason": "KP", "csrf_token": csrf, "confirmed": "yes"}
    )
    assert done.status_code == 303
    assert done.headers["location"] == f"/grants/{GRANT_ID}/propagation?version=2&done=revoked"
    [(_, _, _, body)] = [c for c in services.calls if c[2].endswith("/revoke")]
    assert body["reason"] == "KP" and body["wait"] == "applied"


def test_an_action_needs_a_reason(console: TestClient) -> None:
    sign_in(console, "regulator")
    csrf = csrf_of(console.get(f"/grants/{GRANT_ID}/suspend"))
    answer = console.post(f"/grants/{GRANT_ID}/suspend", data={"reason": " ", "csrf_token": csrf})
    assert answer.status_code == 422 and "Say why" in answer.text


def test_the_apis_validation_errors_are_shown_beside_their_fields(
    console: TestClient, services: FakeServices
) -> None:
    services.issue_errors = [
        {"field": "grantee.id", "message": "String should have at least 1 character"},
        {"field": "conditions.0.deny", "message": "unknown country 'XX'"},
    ]
    sign_in(console, "regulator")
    csrf = csrf_of(console.get("/grants/new"))
    form = {"csrf_token": csrf, "confirmed": "yes", "carveout_id": "co", "model_id": "m",
            "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2027-01-01T00:00:00Z",
            "conditions": "[]", "contact_kind": "none"}  # fmt: skip
    answer = console.post("/grants/new", data=form)
    assert answer.status_code == 422
    assert re.search(r'id="grantee_id-error">String should have at least 1 character', answer.text)
    assert re.search(r"id=\"conditions-error\">unknown country &#39;XX&#39;", answer.text)
    assert 'aria-invalid="true"' in answer.text


def test_conditions_that_are_not_json_are_caught_before_the_api(
    console: TestClient, services: FakeServices
) -> None:
    sign_in(console, "regulator")
    csrf = csrf_of(console.get("/grants/new"))
    answer = console.post("/grants/new", data={"csrf_token": csrf, "conditions": "[oops"})
    assert answer.status_code == 422 and "not valid JSON" in answer.text
    # Only the sign-in's empty probe reached the grant service's POST /v1/grants.
    assert not [c for c in services.calls if c[:3] == ("regulator", "POST", "/v1/grants") and c[3]]
