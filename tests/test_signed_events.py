"""Signed events from outside (DESIGN §12): anyone who can write to Kafka can publish a
grant event or a breach, but without the producing service's signature it is dead-lettered
``bad_signature`` and has no effect; the genuine ones, signed, still act."""

from __future__ import annotations

import asyncio
import base64
import json
import stat
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from carveout_contracts import topics
from carveout_runtime.event_signing import EventSigning
from carveout_runtime.signing import key_id

from .system import SERVICES, System, wait_for
from .test_bounded_consumers import T0, letters_by_consumer
from .test_faults import REVOKE_AFTER_3, golden, issue, produce_at, to_bytes
from .test_regulator import GATEWAY_ASK
from .test_replay import carveout

pytestmark = pytest.mark.broker


def forged_grant(grantee: str) -> tuple[str, bytes]:
    event = golden("grant.issued")
    grant_id = f"grt_forged_{uuid.uuid4().hex[:12]}"
    event["event_id"] = str(uuid.uuid4())
    event["key"] = event["data"]["grant_id"] = grant_id
    event["data"]["grantee"]["id"] = grantee
    return grant_id, to_bytes(event)


def breaches_of(grant_id: str, grantee: str, count: int) -> list[bytes]:
    values = []
    for n in range(count):
        event = golden("condition.breached")
        event["event_id"] = str(uuid.uuid4())
        event["key"] = grant_id
        event["data"].update(
            breach_id=f"brc_forged_{uuid.uuid4().hex[:16]}",
            grant_id=grant_id,
            grant_version=1,
            grantee_id=grantee,
            severity="critical",
            access_event_id=str(uuid.uuid4()),
            access_occurred_at=T0.replace(minute=n).isoformat().replace("+00:00", "Z"),
        )
        values.append(to_bytes(event))
    return values


def decision(system: System, grantee: str) -> dict[str, Any]:
    body = {**GATEWAY_ASK, "grantee_id": grantee}
    answer: dict[str, Any] = system.call(
        "enforcement", "POST", "/v1/decisions", role="gateway", json=body
    ).json()
    return answer


def test_a_forged_grant_is_dead_lettered_and_allows_nothing(system: System) -> None:
    grantee = "org-forger"
    grant_id, value = forged_grant(grantee)
    [unsigned] = asyncio.run(
        produce_at(system.bootstrap, topics.GRANTS, [value], grant_id, signed=False)
    )
    letters = letters_by_consumer(system, topics.GRANTS, unsigned, {"enforcement", "notification"})
    for letter in letters.values():
        assert letter.reason == "bad_signature"
        assert letter.error.startswith("missing signature")
    assert system.call("enforcement", "GET", f"/v1/grants/{grant_id}").status_code == 404
    answer = decision(system, grantee)
    assert answer["decision"] == "deny"
    assert [v["kind"] for v in answer["violations"]] == ["no_active_grant"]


def test_a_grant_signed_with_another_services_key_is_refused(system: System) -> None:
    grant_id, value = forged_grant("org-forger-2")

    async def send() -> tuple[int, int]:
        producer = AIOKafkaProducer(bootstrap_servers=system.bootstrap, enable_idempotence=False)
        await producer.start()
        try:
            headers = EventSigning.of("enforcement", system.var_dir / "keys", None).sign(value, {})
            sent = await producer.send_and_wait(
                topics.GRANTS,
                value,
                key=grant_id.encode(),
                headers=[(k, v.encode()) for k, v in headers.items()],
            )
            return sent.partition, sent.offset
        finally:
            await producer.stop()

    position = asyncio.run(send())
    letters = letters_by_consumer(system, topics.GRANTS, position, {"enforcement"})
    assert letters["enforcement"].reason == "bad_signature"
    assert "key of another service" in letters["enforcement"].error
    assert system.call("enforcement", "GET", f"/v1/grants/{grant_id}").status_code == 404


def test_forged_breaches_count_for_no_breach_policy_and_signed_ones_do(
    system: System, demo_grant: dict[str, Any]
) -> None:
    grantee = "org-forged-breaches"
    grant_id = issue(system, demo_grant, grantee, None, REVOKE_AFTER_3)
    forged = asyncio.run(
        produce_at(
            system.bootstrap,
            topics.BREACHES,
            breaches_of(grant_id, grantee, 3),
            grant_id,
            signed=False,
        )
    )
    for position in forged:
        letters = letters_by_consumer(system, topics.BREACHES, position, {"grant"})
        assert letters["grant"].reason == "bad_signature"
    grant = system.call("grant", "GET", f"/v1/grants/{grant_id}").json()
    assert (grant["status"], grant["version"]) == ("active", 1)

    # The same three, signed as enforcement signs: the policy revokes.
    asyncio.run(
        produce_at(system.bootstrap, topics.BREACHES, breaches_of(grant_id, grantee, 3), grant_id)
    )
    wait_for(
        lambda: system.call("grant", "GET", f"/v1/grants/{grant_id}").json()["status"] == "revoked",
        20,
        "the breach policy revoking after three signed breaches",
    )


def test_each_service_serves_the_keys_its_events_verify_with(system: System) -> None:
    keys = system.var_dir / "keys"
    trusted = json.loads((keys / "trusted-keys.json").read_text())["keys"]
    for service in SERVICES:
        answer = system.call(service, "GET", "/v1/keys", role="auditor").json()
        assert answer["service"] == service
        [current] = [k for k in answer["keys"] if k["current"]]
        assert {k: current[k] for k in ("kid", "service", "public_key")} in trusted
        assert current["kid"] == key_id(base64.b64decode(current["public_key"]))
    private = [p for p in Path(keys).iterdir() if p.suffix == ".key"]
    assert sorted(p.stem for p in private) == ["enforcement-1", "grant-1", "notification-1"]
    for path in private:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700


def test_a_replay_leaves_out_what_the_live_services_refused(
    system: System, demo_grant: dict[str, Any], tmp_path: Path
) -> None:
    """Forged records are on the log; a replay checks signatures as the live services did,
    so each rebuilt store equals its live one."""
    grantee = "org-forged-replay"
    grant_id = issue(system, demo_grant, grantee, None, REVOKE_AFTER_3)
    forged_id, forged = forged_grant(grantee)
    positions = asyncio.run(
        produce_at(system.bootstrap, topics.GRANTS, [forged], forged_id, signed=False)
    )
    positions += asyncio.run(
        produce_at(
            system.bootstrap,
            topics.BREACHES,
            breaches_of(grant_id, grantee, 3),
            grant_id,
            signed=False,
        )
    )
    letters_by_consumer(system, topics.GRANTS, positions[0], {"enforcement", "notification"})
    for position in positions[1:]:
        letters_by_consumer(system, topics.BREACHES, position, {"grant", "notification"})
    for service in SERVICES:
        live = carveout(system, "digest", service, "--json")
        assert live.returncode == 0, live.stderr
        target = f"sqlite:///{tmp_path / f'{service}.db'}"
        rebuilt = carveout(system, "replay", service, "--database-url", target, "--json")
        assert rebuilt.returncode == 0, rebuilt.stderr
        report = json.loads(rebuilt.stdout)
        assert report["digest"] == json.loads(live.stdout)["digest"], service
        assert report["poison"] >= 1, service  # the forgeries, left out
