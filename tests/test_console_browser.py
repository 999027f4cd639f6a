"""The regulator console in a real browser (DESIGN §13), on the whole system ``carveout up``
starts: Playwright drives Debian's Chromium. A regulator signs in, issues a grant, sees an
embargoed access arrive as a breach without reloading, checks its proof, revokes the
carveout with a reason and sees propagation complete; an auditor sees the same with no
control to act; a gateway token cannot sign in; a form without its CSRF token is refused;
and no request leaves 127.0.0.1. Each page's screenshot goes to ``var/console/``.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from .system import System, wait_for

playwright_sync = pytest.importorskip(
    "playwright.sync_api", reason="the Python package playwright: pip install -e '.[dev]'"
)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip(
        "no Chromium: install Debian's package chromium (apt-get install chromium)",
        allow_module_level=True,
    )
SCREENSHOTS = Path(__file__).resolve().parents[1] / "var" / "console"
CARVEOUT = f"co-browser-{uuid.uuid4().hex[:6]}"
GRANTEE = "org-browser"
LOCAL_HOSTS = {"127.0.0.1"}


class Browsing:
    """One Chromium for the module; each role gets a context of its own, every request of
    which is held to 127.0.0.1 (anything else is aborted and remembered)."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.elsewhere: list[str] = []
        self._playwright = playwright_sync.sync_playwright().start()
        self.browser = self._playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )

    def _route(self, route: Any) -> None:
        url = route.request.url
        if urlsplit(url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            self.elsewhere.append(url)
            route.abort()

    def page(self, width: int = 1280, height: int = 900) -> Any:
        context = self.browser.new_context(
            base_url=self.system.console_url, viewport={"width": width, "height": height}
        )
        context.route("**/*", self._route)
        page = context.new_page()
        page.set_default_timeout(15_000)
        return page

    def sign_in(self, role: str) -> Any:
        page = self.page()
        page.goto("/signin")
        page.get_by_label("Token").fill(self.system.tokens()[role])
        page.get_by_role("button", name="Sign in").click()
        return page

    def close(self) -> None:
        self.browser.close()
        self._playwright.stop()


@pytest.fixture(scope="module")
def browsing(system: System) -> Iterator[Browsing]:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browsing = Browsing(system)
    try:
        yield browsing
    finally:
        browsing.close()
    assert browsing.elsewhere == [], f"requests left 127.0.0.1: {browsing.elsewhere}"


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def embargoed_access(system: System) -> None:
    access = {
        "request_id": f"req_{uuid.uuid4().hex[:12]}",
        "grantee_id": GRANTEE,
        "model_id": "mythos-preview",
        "user_id": "user-kp",
        "user_country": "KP",
        "deployment_region": "us-east",
        "purpose": "vulnerability-scanning",
        "safeguards": ["access_logging", "mfa"],
        "units": 1,
        "gateway_id": "gw-browser",
    }
    sent = system.call("enforcement", "POST", "/v1/access", role="gateway", json=access)
    assert sent.status_code == 202, sent.text


@pytest.fixture(scope="module")
def scenario() -> dict[str, str]:
    """What the regulator's test made, for the auditor's to look at."""
    return {}


def test_a_regulator_issues_sees_a_breach_live_and_revokes_the_carveout(
    browsing: Browsing, system: System, scenario: dict[str, str]
) -> None:
    page = browsing.page()
    page.goto("/grants")
    assert "/signin" in page.url
    shot(page, "signin")
    page.get_by_label("Token").fill(system.tokens()["regulator"])
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="Issue a grant").click()
    page.get_by_label("Carveout id").fill(CARVEOUT)
    page.get_by_label("Model id").fill("mythos-preview")
    page.get_by_label("Grantee id").fill(GRANTEE)
    page.get_by_label("Grantee name").fill("Browser Test Inc.")
    shot(page, "issue")
    page.get_by_role("button", name="Issue grant").click()
    page.get_by_role("button", name="Confirm: Issue grant").click()
    page.locator("[data-propagation=complete]").wait_for()
    shot(page, "issued-propagation")
    grant_id = re.search(r"/grants/([^/]+)/propagation", page.url).group(1)  # type: ignore[union-attr]
    scenario["grant_id"] = grant_id

    page.get_by_role("link", name="Grants", exact=True).click()
    assert page.get_by_role("link", name=grant_id).is_visible()
    shot(page, "grants")

    page.get_by_role("link", name="Breaches", exact=True).click()
    page.evaluate("window.stillTheSamePage = true")
    embargoed_access(system)
    row = page.locator("tr.breach", has_text=grant_id).first
    row.wait_for()
    assert page.evaluate("window.stillTheSamePage") is True, "the page was reloaded"
    assert "embargo" in row.inner_text()
    shot(page, "breaches")

    row.get_by_role("link", name="proof").click()

    def verified() -> bool:
        if page.locator("[data-verified=yes]").count():
            return True
        page.reload()  # a decision is checkpointed within a second of being judged
        return False

    wait_for(verified, 10, "the decision's proof verified", every=0.5)
    shot(page, "decision-proof")

    page.goto(f"/grants/{grant_id}")
    assert page.locator("tr.breach").count() >= 1
    shot(page, "grant")
    page.get_by_role("link", name="Revoke carveout…").click()
    page.get_by_label("Reason").fill("embargoed access from KP")
    page.get_by_role("button", name="Revoke carveout").click()
    page.get_by_role("button", name="Confirm: Revoke carveout").click()
    page.get_by_role("status").filter(has_text="Revoked").wait_for()
    page.locator("[data-propagation=complete]").first.wait_for()
    assert page.locator("[data-propagation=pending]").count() == 0
    shot(page, "carveout-revoked")
    revoked = system.call("grant", "GET", f"/v1/grants/{grant_id}").json()
    assert revoked["status"] == "revoked"

    page.goto("/deadletters")
    shot(page, "deadletters")
    phone = browsing.sign_in("regulator")
    phone.set_viewport_size({"width": 390, "height": 844})
    phone.goto(f"/grants/{grant_id}")
    shot(phone, "grant-phone")


def test_an_auditor_sees_the_same_with_no_control_to_act(
    browsing: Browsing, system: System, scenario: dict[str, str]
) -> None:
    grant_id = scenario.get("grant_id") or pytest.skip("the regulator's test made no grant")
    page = browsing.sign_in("auditor")
    assert page.get_by_text("(read-only)").is_visible()
    assert page.get_by_role("link", name=grant_id).is_visible()
    assert page.get_by_role("link", name="Issue a grant").count() == 0
    page.get_by_role("link", name=grant_id).click()
    actions = re.compile(r"Amend|Suspend|Reinstate|Revoke|Issue|Re-drive")
    assert page.get_by_role("link", name=actions).count() == 0
    assert page.get_by_role("button", name=actions).count() == 0
    assert page.locator("tr.breach").count() >= 1
    shot(page, "grant-auditor")
    page.goto("/breaches")
    assert page.locator("tr.breach", has_text=grant_id).count() >= 1
    page.goto("/deadletters")
    assert page.get_by_role("button", name=actions).count() == 0
    page.goto(f"/grants/{grant_id}/suspend")
    assert "Only a regulator" in page.content()
    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
    refused = page.request.post(
        f"/grants/{grant_id}/suspend", form={"reason": "no", "csrf_token": csrf}
    )
    assert refused.status == 403


def test_a_gateway_token_cannot_sign_in(browsing: Browsing) -> None:
    page = browsing.sign_in("gateway")
    assert "/signin" in page.url
    assert page.get_by_role("alert").filter(has_text="Gateway tokens cannot sign in").count()
    assert not [c for c in page.context.cookies() if c["name"] == "carveout_session"]
    shot(page, "signin-gateway-refused")


def test_a_form_without_its_csrf_token_is_refused(
    browsing: Browsing, system: System, scenario: dict[str, str]
) -> None:
    page = browsing.sign_in("regulator")
    [session] = [c for c in page.context.cookies() if c["name"] == "carveout_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""
    target = scenario.get("grant_id", "grt_none")
    refused = page.request.post("/grants/new", form={"grant_json": "{}"})
    assert refused.status == 403
    refused = page.request.post(f"/grants/{target}/suspend", form={"reason": "forged"})
    assert refused.status == 403
    # Straight to the console, no browser: the sign-in form is guarded too.
    signin = httpx.post(
        system.console_url + "/signin", data={"token": system.tokens()["regulator"]}
    )
    assert signin.status_code == 403
