"""One trace from an access to the notification of the revocation it caused, and metrics.

The whole system runs with the console exporter, each service writing its spans as JSON
lines to a file of its own; the test joins the three files by span id.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .kafka import access_event
from .receivers import WebhookReceiver
from .system import SERVICES, System, wait_for

pytestmark = pytest.mark.broker

GRANTEE = "org-traced"


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    hooks = WebhookReceiver(failures=0)
    hooks.start()
    try:
        yield hooks
    finally:
        hooks.stop()


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    var = tmp_path_factory.mktemp("var")
    system = System(
        var,
        extra_env={
            "CARVEOUT_OTEL_EXPORTER": "console",
            "CARVEOUT_OTEL_CONSOLE_FILE": str(var / "spans-{service}.jsonl"),
            "OTEL_BSP_SCHEDULE_DELAY": "100",  # export spans every 100 ms
            "CARVEOUT_NOTIFICATION_DELIVERY_POLL_SECONDS": "0.1",
        },
    )
    system.start()
    try:
        yield system
    finally:
        system.stop()


def spans(system: System) -> dict[str, dict[str, Any]]:
    """Every span exported so far by the three services, by span id."""
    found: dict[str, dict[str, Any]] = {}
    for service in SERVICES:
        path = system.var_dir / f"spans-{service}.jsonl"
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            if line.strip():
                span = json.loads(line)
                span["service"] = span["resource"]["attributes"]["service.name"]
                found[span["context"]["span_id"]] = span
    return found


def ancestry(span: dict[str, Any], by_id: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The span, its parent, its parent's parent... as far as exported spans go."""
    chain = [span]
    while (parent := by_id.get(chain[-1]["parent_id"] or "")) is not None:
        chain.append(parent)
    return chain


def test_one_trace_follows_an_access_to_its_breach_the_revocation_and_the_webhook(
    traced: System, receiver: WebhookReceiver, demo_grant: dict[str, Any]
) -> None:
    body = {
        **demo_grant,
        "grantee": {**demo_grant["grantee"], "id": GRANTEE, "contacts": [
            {"kind": "webhook", "address": receiver.url}
        ]},
    }  # fmt: skip
    issued = traced.call("grant", "POST", "/v1/grants", json=body)
    assert issued.status_code == 201, issued.text
    grant_id = issued.json()["grant_id"]
    wait_for(
        lambda: traced.call("enforcement", "GET", f"/v1/grants/{grant_id}").status_code == 200,
        5,
        "the grant in enforcement",
    )

    # A gateway sends three critical accesses in one request, in a trace of its own.
    trace_id, root_id = secrets.token_hex(16), secrets.token_hex(8)
    now = datetime.now(UTC)
    accesses = [access_event(GRANTEE, now, user_country="KP") for _ in range(3)]
    items = [
        {**a["data"], "event_id": a["event_id"], "occurred_at": a["occurred_at"]} for a in accesses
    ]
    sent = httpx.post(
        traced.url("enforcement") + "/v1/access",
        timeout=10,
        json=items,
        headers={
            "Authorization": f"Bearer {traced.tokens()['gateway']}",
            "traceparent": f"00-{trace_id}-{root_id}-01",
        },
    )
    assert sent.status_code == 202, sent.text

    def revocation_delivered() -> dict[str, Any] | None:
        bodies = [json.loads(d.body) for d in receiver.deliveries if d.accepted]
        return next((b for b in bodies if b["type"] == "carveout.revoked"), None)

    revoked = wait_for(revocation_delivered, 20, "the revocation at the grantee's webhook")
    assert revoked["data"]["cause"] == "breach_policy"
    assert revoked["data"]["grant_ids"] == [grant_id]

    def delivery_chain() -> list[dict[str, Any]] | None:
        by_id = spans(traced)
        for span in by_id.values():
            if span["name"] == "deliver carveout.revoked" and (
                span["attributes"].get("carveout.event_id") == revoked["event_id"]
            ):
                chain = ancestry(span, by_id)
                if chain[-1]["parent_id"] == f"0x{root_id}":  # reaches the gateway's request
                    return chain
        return None

    chain = wait_for(delivery_chain, 20, "the delivery span, linked up to the access request")
    steps = [(span["service"], span["name"]) for span in chain]
    assert {span["context"]["trace_id"] for span in chain} == {f"0x{trace_id}"}, steps

    def position(service: str, name: str) -> int:
        assert (f"carveout-{service}", name) in steps, steps
        return steps.index((f"carveout-{service}", name))

    delivery = position("notification", "deliver carveout.revoked")
    revocation = position("grant", "relay carveout.revoked")
    breach = position("enforcement", "breach condition.breached")
    access = position("enforcement", "carveout.access create")  # the access's publish
    request = position("enforcement", "POST /v1/access")
    assert delivery == 0
    assert delivery < revocation < breach < access < request == len(chain) - 1, steps
    # Each hop between services is a parent link carried in a Kafka header.
    consumed = [s for s in chain if s["name"].endswith(" process")]
    assert {(s["service"], s["name"]) for s in consumed} >= {
        ("carveout-grant", "carveout.breaches process"),
        ("carveout-notification", "carveout.grants process"),
    }, steps
    assert chain[revocation]["attributes"]["carveout.event_id"] == revoked["event_id"]
    assert chain[breach]["attributes"]["carveout.access_event_id"] in {
        a["event_id"] for a in accesses
    }
    assert chain[breach]["attributes"]["carveout.grant_id"] == grant_id
    assert_the_story_is_counted(traced)


def scrape(system: System, service: str) -> dict[str, list[Any]]:
    text = httpx.get(system.url(service) + "/metrics", timeout=5).text
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def labelled(samples: list[Any], name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())


EXPECTED = {
    "grant": {
        "carveout_kafka_received_messages",
        "carveout_consumer_lag",
        "carveout_policy_actions",
    },
    "enforcement": {
        "carveout_kafka_received_messages",
        "carveout_consumer_lag",
        "carveout_decisions",
        "carveout_breaches",
        "carveout_revocation_propagation_seconds",
    },
    "notification": {
        "carveout_kafka_received_messages",
        "carveout_consumer_lag",
        "carveout_deliveries",
    },
}


def test_every_service_lists_its_carveout_metrics(traced: System) -> None:
    for service in SERVICES:
        metrics = scrape(traced, service)
        assert EXPECTED[service] <= set(metrics), service
        lags = [s for s in metrics["carveout_consumer_lag"] if s.labels["service"] == service]
        assert lags, f"{service}: no consumer lag"  # every consumer has joined: it is ready
        assert all(s.labels["partition"].isdigit() and s.value >= 0 for s in lags)
    lagging = scrape(traced, "enforcement")["carveout_consumer_lag"]
    assert {s.labels["topic"] for s in lagging} == {"carveout.grants", "carveout.access"}


def assert_the_story_is_counted(system: System) -> None:
    """The access, breach, revocation and delivery of the trace test, in the metrics."""
    grant, enforcement, notification = (scrape(system, s) for s in SERVICES)
    for service, metrics in zip(SERVICES, (grant, enforcement, notification), strict=True):
        consumed = metrics["carveout_kafka_received_messages"]
        assert labelled(consumed, "carveout_kafka_received_messages_total", app_name=service) > 0
    decisions = enforcement["carveout_decisions"]
    assert labelled(decisions, "carveout_decisions_total", decision="deny") >= 3
    breaches = enforcement["carveout_breaches"]
    assert labelled(breaches, "carveout_breaches_total", severity="critical") >= 3
    propagation = enforcement["carveout_revocation_propagation_seconds"]
    assert labelled(propagation, "carveout_revocation_propagation_seconds_count") >= 1
    assert labelled(grant["carveout_policy_actions"], "carveout_policy_actions_total") >= 1
    deliveries = notification["carveout_deliveries"]
    delivered = labelled(
        deliveries, "carveout_deliveries_total", channel="webhook", outcome="delivered"
    )
    assert delivered >= 1
