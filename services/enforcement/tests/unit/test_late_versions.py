"""A regulator action relayed late: the accesses the log received before its event are
judged without it, those received after with it, live and in a replay alike."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from carveout_contracts import codec, topics
from carveout_enforcement.access import read_access
from carveout_enforcement.domain import apply
from carveout_enforcement.judge import compile_grant, judge

GOLDEN = Path(__file__).resolve().parents[4] / "contracts" / "golden"
GRANT_ID = "grt_01JYXK6R3B4C5D6E7F8G9H0JKM"
ISSUED_MS = 1_780_000_000_000
SUSPENSION_APPENDED_MS = 1_789_000_000_000
"""The golden suspension (effective 2026-08-03) reached the log weeks later (2026-09-09)."""


def golden(event_type: str) -> Any:
    return codec.decode(topics.GRANTS, (GOLDEN / f"{event_type}.v1.json").read_bytes())


def suspended_late() -> Any:
    issued = apply(None, golden("grant.issued"), GRANT_ID, ISSUED_MS)
    amended = apply(issued, golden("grant.amended"), GRANT_ID, ISSUED_MS + 1)
    return apply(amended, golden("grant.suspended"), GRANT_ID, SUSPENSION_APPENDED_MS)


def compliant_access() -> Any:
    raw = json.loads((GOLDEN / "access.recorded.v1.json").read_bytes())
    raw["occurred_at"] = "2026-08-10T12:00:00Z"  # after the suspension's effective_at
    raw["data"]["user_country"] = "US"
    return read_access(json.dumps(raw).encode(), datetime(2026, 9, 10, tzinfo=UTC).timestamp())


def test_each_version_keeps_when_the_log_received_it() -> None:
    view = suspended_late()
    assert view.periods[-1].appended_ms == SUSPENSION_APPENDED_MS
    assert view.periods[-1].status == "suspended"


def test_an_access_the_log_received_before_the_action_is_judged_without_it() -> None:
    grant = compile_grant(suspended_late())
    verdict = judge(compliant_access(), [grant], {}, SUSPENSION_APPENDED_MS - 1)
    assert verdict.decision == "allow"
    assert verdict.grant_version == 2


def test_an_access_the_log_received_after_the_action_is_judged_with_it() -> None:
    grant = compile_grant(suspended_late())
    verdict = judge(compliant_access(), [grant], {}, SUSPENSION_APPENDED_MS + 1)
    assert verdict.decision == "deny"
    assert verdict.violations[0]["actual"] == "suspended"
    # without an append time (the decision API), every version known counts
    assert judge(compliant_access(), [grant], {}).decision == "deny"
