"""The three services as the console sees them, faked over an httpx transport: tokens of
each role, a grant, its propagation, breaches and the answers to actions."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx

TOKENS = {"regulator": "reg-token", "auditor": "aud-token", "gateway": "gw-token"}
GRANT_ID = "grt_fake"
GRANT = {
    "grant_id": GRANT_ID, "carveout_id": "co-fake", "version": 1, "status": "active",
    "grantee": {"id": "org-fake", "name": "Fake Inc.", "contacts": []},
    "model_id": "mythos-preview", "valid_from": "2026-01-01T00:00:00Z",
    "valid_until": "2027-01-01T00:00:00Z",
    "conditions": [{"id": "embargo", "kind": "user_countries", "deny": ["KP"],
                    "severity": "critical"}],
    "breach_policy": {"suspend_after_critical": None, "revoke_after_critical": 3,
                      "window_seconds": 3600},
    "issued_by": "regulator", "issued_at": "2026-01-01T00:00:00Z",
    "updated_at": "2026-01-01T00:00:00Z",
}  # fmt: skip
PROPAGATION = {
    "version": 1, "event_id": "ev-1", "event_type": "grant.issued",
    "effective_at": "2026-01-01T00:00:00Z", "appended_at": "2026-01-01T00:00:00Z",
    "enforcers": [{"enforcer_id": "e1", "applied_at": "2026-01-01T00:00:01Z", "via": "ack"}],
    "pending": [], "complete": True, "complete_at": "2026-01-01T00:00:01Z",
}  # fmt: skip
REGULATOR_ONLY = ("/v1/grants", "/revoke", "/suspend", "/reinstate", "/amend")


@dataclass
class FakeServices:
    """Answers as the services would, and remembers every call (role, method, path, body)."""

    calls: list[tuple[str, str, str, Any]] = field(default_factory=list)
    issue_errors: list[dict[str, str]] = field(default_factory=list)

    def role(self, request: httpx.Request) -> str | None:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        return next((role for role, t in TOKENS.items() if t == token), None)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        role, path, method = self.role(request), request.url.path, request.method
        body = json.loads(request.content) if request.content else None
        self.calls.append((str(role), method, path, body))
        if role is None:
            return httpx.Response(401, json={"error": "unauthorized", "message": "unknown"})
        if role == "gateway" or (
            method == "POST" and role != "regulator" and path.endswith(REGULATOR_ONLY)
        ):
            return httpx.Response(403, json={"error": "forbidden", "message": "role"})
        return self.answer(method, path, body)

    def answer(self, method: str, path: str, body: Any) -> httpx.Response:
        if method == "POST" and path == "/v1/grants":
            if not body or self.issue_errors:
                errors = self.issue_errors or [{"field": "carveout_id", "message": "required"}]
                return httpx.Response(422, json={"message": "invalid", "errors": errors})
            return httpx.Response(201, json={**GRANT, "propagation": PROPAGATION})
        if method == "POST":
            return httpx.Response(
                200, json={"grant_id": GRANT_ID, "version": 2, "status": "revoked"}
            )
        pages = {
            "/v1/grants": {"items": [GRANT], "total": 1, "limit": 50, "offset": 0},
            f"/v1/grants/{GRANT_ID}": GRANT,
            f"/v1/grants/{GRANT_ID}/propagation": {"grant_id": GRANT_ID, "alive": ["e1"],
                                                  "versions": [PROPAGATION]},
            "/v1/breaches": {"items": [], "total": 0},
            "/v1/notifications": {"items": [], "total": 0},
        }  # fmt: skip
        if path in pages:
            return httpx.Response(200, json=pages[path])
        return httpx.Response(404, json={"error": "not_found", "message": f"no {path}"})
