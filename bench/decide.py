"""In-process decisions: Carveout's judge against Cedar deciding the same rules, same run."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from carveout_contracts import codec, topics
from carveout_enforcement.access import Access
from carveout_enforcement.domain import apply
from carveout_enforcement.judge import compile_grant, judge

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo-grant.json"

# The demo grant's rules in Cedar. Usage so far in the window is context, as Cedar keeps no state.
CEDAR_POLICY = """
permit(
  principal == Grantee::"org-netsec",
  action == Action::"use",
  resource == Model::"mythos-preview"
)
when {
  ["US", "GB", "IN"].contains(context.user_country) &&
  !(["KP", "IR", "CU", "SY", "RU"].contains(context.user_country)) &&
  ["us-east", "us-west"].contains(context.deployment_region) &&
  context.safeguards.containsAll(["access_logging", "mfa"]) &&
  context.occurred_at >= 1782604800 && context.occurred_at < 1830211200
};
forbid(principal, action, resource)
when { !(["vulnerability-scanning"].contains(context.purpose)) };
forbid(principal, action, resource)
when { context.units_used_today + context.units > 1000000 };
"""


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def demo_grant() -> Any:
    body = json.loads(DEMO.read_text())
    event = codec.decode(
        topics.GRANTS,
        json.dumps(
            {
                "event_id": "00000000-0000-4000-8000-000000000001",
                "type": "grant.issued",
                "version": 1,
                "occurred_at": "2026-06-28T00:00:00Z",
                "producer": "grant",
                "key": "grt_demo",
                "data": {**body, "grant_id": "grt_demo", "issued_by": "regulator"},
            }
        ),
    )
    view = apply(None, event, "grt_demo")
    assert view is not None
    return compile_grant(view)


ACCESS = Access(
    event_id="e",
    occurred_at=1789038299.0,  # 2026-09-10T11:04:59Z
    request_id="r",
    grantee_id="org-netsec",
    model_id="mythos-preview",
    grant_id=None,
    user_id="u",
    user_country="GB",
    deployment_region="us-east",
    purpose="vulnerability-scanning",
    safeguards=frozenset({"access_logging", "mfa"}),
    units=120,
    gateway_id="gw",
)


def carveout_decide_us(rounds: int = 100_000) -> list[float]:
    grants = [demo_grant()]
    usage: dict[Any, int] = {}
    for _ in range(2000):
        judge(ACCESS, grants, usage)
    samples = []
    clock = time.perf_counter_ns
    for _ in range(rounds):
        started = clock()
        verdict = judge(ACCESS, grants, usage)
        samples.append((clock() - started) / 1000)
    assert verdict.decision == "allow", verdict
    return samples


def cedar_decide_us(rounds: int = 20_000) -> list[float]:
    import cedarpy

    # Parsed once and reused, as a service would: the fastest way to call Cedar.
    policies = cedarpy.PolicySet.from_str(CEDAR_POLICY)
    entities = cedarpy.Entities.from_json_str("[]")
    request = {
        "principal": 'Grantee::"org-netsec"',
        "action": 'Action::"use"',
        "resource": 'Model::"mythos-preview"',
        "context": {
            "user_country": ACCESS.user_country,
            "deployment_region": ACCESS.deployment_region,
            "purpose": ACCESS.purpose,
            "safeguards": sorted(ACCESS.safeguards),
            "units": ACCESS.units,
            "units_used_today": 0,
            "occurred_at": int(ACCESS.occurred_at),
        },
    }
    result = cedarpy.is_authorized(request, policies, entities)
    assert result.allowed, result.diagnostics
    for _ in range(500):
        cedarpy.is_authorized(request, policies, entities)
    samples = []
    clock = time.perf_counter_ns
    for _ in range(rounds):
        started = clock()
        cedarpy.is_authorized(request, policies, entities)
        samples.append((clock() - started) / 1000)
    return samples
