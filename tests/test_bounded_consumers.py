"""No record stops a consumer (DESIGN §10), on the real broker: a record too large, one
whose dead letter used to be too large, a breach at the edge of time; and a truncated
dead letter is re-driven from its source."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from carveout_contracts import codec, limits, topics
from carveout_ops import dlq

from .kafka import access_event
from .system import System, wait_for
from .test_faults import REVOKE_AFTER_3, events_on, golden, issue, produce_at, to_bytes, total
from .test_regulator import GATEWAY_ASK, act

pytestmark = pytest.mark.broker

T0 = datetime(2026, 9, 10, 11, 0, tzinfo=UTC)


def letters_for(system: System, topic: str, position: tuple[int, int]) -> list[Any]:
    """The dead letters of the record at ``position`` on ``topic``."""
    return [
        e.data
        for _, e in events_on(system, topics.DEADLETTER)
        if e.type == "message.dead_lettered"
        and (e.data.source_topic, e.data.source_partition, e.data.source_offset)
        == (topic, *position)
    ]


def letters_by_consumer(
    system: System, topic: str, position: tuple[int, int], consumers: set[str]
) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        letters = {x.consumer: x for x in letters_for(system, topic, position)}
        return letters if set(letters) >= consumers else None

    return wait_for(found, 20, f"dead letters of {topic} {position} from {consumers}", every=0.2)


def test_control_bytes_on_the_grants_topic_do_not_stop_revocations(
    system: System, demo_grant: dict[str, Any]
) -> None:
    """200 kB of control bytes: its dead letter was 1.2 MB of JSON, more than the broker
    takes, so the record was retried forever and a later revocation never arrived."""
    grantee = "org-bounded-control"
    grant_id = issue(system, demo_grant, grantee, None, REVOKE_AFTER_3)
    value = b"\x01" * 200_000
    [position] = asyncio.run(produce_at(system.bootstrap, topics.GRANTS, [value], grant_id))

    status, revoked = act(system, f"/v1/grants/{grant_id}/revoke")
    assert status == 200, revoked
    answer = system.call(
        "enforcement",
        "POST",
        "/v1/decisions",
        role="gateway",
        json={
            **GATEWAY_ASK,
            "grantee_id": grantee,
            "min_consistency": revoked["consistency_token"],
        },
    ).json()
    assert answer["decision"] == "deny", answer
    assert answer["consistency"]["met"] is True

    letters = letters_by_consumer(system, topics.GRANTS, position, {"enforcement", "notification"})
    for letter in letters.values():
        assert letter.reason == "bad_json"  # under the record limit: decoded, and refused
        assert letter.payload_encoding == "base64"
        assert codec.original_value(letter) == value


def test_a_record_over_the_limit_is_dead_lettered_too_large_and_the_next_judged(
    system: System, demo_grant: dict[str, Any]
) -> None:
    grantee = "org-bounded-large"
    grant_id = issue(system, demo_grant, grantee, None, REVOKE_AFTER_3)
    huge = b'{"padding": "' + b"x" * (600 * limits.KIB) + b'"}'
    [on_access] = asyncio.run(produce_at(system.bootstrap, topics.ACCESS, [huge], grantee))
    [on_breaches] = asyncio.run(produce_at(system.bootstrap, topics.BREACHES, [huge], grant_id))
    after = [access_event(grantee, T0 + timedelta(seconds=n)) for n in range(3)]
    asyncio.run(produce_at(system.bootstrap, topics.ACCESS, [to_bytes(e) for e in after], grantee))
    wait_for(
        lambda: total(system, "/v1/decisions", grantee_id=grantee) == len(after),
        15,
        "the accesses after the large record judged",
    )

    sha = hashlib.sha256(huge).hexdigest()
    for topic, position, consumers in (
        (topics.ACCESS, on_access, {"enforcement"}),
        (topics.BREACHES, on_breaches, {"grant", "notification"}),
    ):
        for letter in letters_by_consumer(system, topic, position, consumers).values():
            assert letter.reason == "too_large", letter
            assert letter.truncated
            assert (letter.size, letter.sha256) == (len(huge), sha)
            assert codec.head_value(letter) == huge[: limits.DEAD_LETTER_HEAD_BYTES]
            assert str(len(huge)) in letter.error


def test_deeply_nested_json_is_dead_lettered_by_every_consumer_and_stops_none(
    system: System, demo_grant: dict[str, Any]
) -> None:
    """10 kB of ``[[[[…]]]]`` broke the JSON reader itself (a RecursionError, not a decoding
    error), so the record was retried forever: enforcement judged no later access, and a
    revocation after it never reached enforcement."""
    grantee = "org-bounded-deep"
    grant_id = issue(system, demo_grant, grantee, None, REVOKE_AFTER_3)
    deep = b"[" * 5000 + b"]" * 5000
    [on_access] = asyncio.run(produce_at(system.bootstrap, topics.ACCESS, [deep], grantee))
    [on_grants] = asyncio.run(produce_at(system.bootstrap, topics.GRANTS, [deep], grant_id))
    [on_breaches] = asyncio.run(produce_at(system.bootstrap, topics.BREACHES, [deep], grant_id))

    after = [access_event(grantee, T0 + timedelta(seconds=n)) for n in range(3)]
    asyncio.run(produce_at(system.bootstrap, topics.ACCESS, [to_bytes(e) for e in after], grantee))
    wait_for(
        lambda: total(system, "/v1/decisions", grantee_id=grantee) == len(after),
        15,
        "the accesses after the nested record judged",
    )
    status, revoked = act(system, f"/v1/grants/{grant_id}/revoke")
    assert status == 200, revoked
    answer = system.call(
        "enforcement",
        "POST",
        "/v1/decisions",
        role="gateway",
        json={
            **GATEWAY_ASK,
            "grantee_id": grantee,
            "min_consistency": revoked["consistency_token"],
        },
    ).json()
    assert (answer["decision"], answer["consistency"]["met"]) == ("deny", True), answer

    for topic, position, consumers in (
        (topics.ACCESS, on_access, {"enforcement"}),
        (topics.GRANTS, on_grants, {"enforcement", "notification"}),
        (topics.BREACHES, on_breaches, {"grant", "notification"}),
    ):
        for letter in letters_by_consumer(system, topic, position, consumers).values():
            assert letter.reason == "bad_json", letter
            assert codec.original_value(letter) == deep
    for service in ("grant", "enforcement", "notification"):
        assert system.call(service, "GET", "/readyz", role=None).status_code == 200
    # The operator's listing reads them too.
    assert asyncio.run(dlq.load(system.bootstrap)).entries


def test_a_truncated_dead_letter_is_redriven_whole_from_its_source(system: System) -> None:
    """The dead letter keeps 4 KiB; re-driving reads the record back, checks its SHA-256
    and publishes it whole (here it is still too large, so it comes back as a new entry
    with the same size and digest)."""
    huge = b"[" + b" " * (300 * limits.KIB) + b"]"
    key = f"org-bounded-redrive-{uuid.uuid4().hex[:6]}"
    [position] = asyncio.run(produce_at(system.bootstrap, topics.ACCESS, [huge], key))
    [letter] = letters_by_consumer(system, topics.ACCESS, position, {"enforcement"}).values()
    assert (letter.reason, letter.truncated) == ("invalid", True)  # not a JSON object

    entries = asyncio.run(dlq.load(system.bootstrap)).entries
    [entry] = [e for e in entries if e.source == (topics.ACCESS, *position)]
    [done] = asyncio.run(dlq.redrive(system.bootstrap, [entry], by="test"))
    assert done.offset is not None and done.partition is not None
    [again] = letters_by_consumer(
        system, topics.ACCESS, (done.partition, done.offset), {"enforcement"}
    ).values()
    assert (again.size, again.sha256) == (len(huge), hashlib.sha256(huge).hexdigest())
    assert again.headers.get(dlq.REDRIVE_HEADER) == entry.id


def test_a_breach_dated_year_one_does_not_stop_the_breach_policy(
    system: System, demo_grant: dict[str, Any]
) -> None:
    """Its window start overflowed, and it was retried forever: no breach policy acted
    on that partition again."""
    grantee = "org-bounded-year-one"
    grant_id = issue(system, demo_grant, grantee, None, REVOKE_AFTER_3)

    def breach(access_occurred_at: str) -> bytes:
        event = golden("condition.breached")
        event["event_id"] = str(uuid.uuid4())
        event["key"] = grant_id
        event["data"].update(
            breach_id=f"brc_year_one_{uuid.uuid4().hex[:16]}",
            grant_id=grant_id,
            grant_version=1,
            grantee_id=grantee,
            access_event_id=str(uuid.uuid4()),
            access_occurred_at=access_occurred_at,
        )
        return to_bytes(event)

    forged = breach("0001-01-01T00:00:00Z")
    genuine = [
        breach((T0 + timedelta(seconds=n)).isoformat().replace("+00:00", "Z")) for n in range(3)
    ]
    asyncio.run(produce_at(system.bootstrap, topics.BREACHES, [forged, *genuine], grant_id))
    wait_for(
        lambda: system.call("grant", "GET", f"/v1/grants/{grant_id}").json()["status"] == "revoked",
        20,
        "the breach policy revoking after the three genuine breaches",
    )
    failed = [
        e.data
        for _, e in events_on(system, topics.DEADLETTER)
        if e.type == "message.dead_lettered"
        and e.data.consumer == "grant"
        and e.data.reason == "failed"
        and grant_id.encode() in codec.head_value(e.data)
    ]
    assert failed == []  # handled, not merely set aside


def test_a_breach_the_store_keeps_refusing_is_set_aside_failed_and_the_policy_goes_on(
    system: System, demo_grant: dict[str, Any]
) -> None:
    """A record whose processing fails the same way every time (here the grant service's
    store refuses its row) is tried a bounded number of times, dead-lettered ``failed``
    with the error, and the breach policy acts on the breaches after it."""
    grantee = "org-bounded-refused"
    grant_id = issue(system, demo_grant, grantee, None, REVOKE_AFTER_3)
    refused = f"brc_refused_{uuid.uuid4().hex[:16]}"
    with contextlib.closing(sqlite3.connect(system.var_dir / "grant.db", timeout=10)) as db:
        db.execute(
            f"CREATE TRIGGER refuse_{refused} BEFORE INSERT ON policy_breaches "
            f"WHEN NEW.breach_id = '{refused}' "
            "BEGIN SELECT RAISE(ABORT, 'this breach is refused by the store'); END"
        )
        db.commit()

    def breach(breach_id: str, at: datetime) -> bytes:
        event = golden("condition.breached")
        event["event_id"] = str(uuid.uuid4())
        event["key"] = grant_id
        event["data"].update(
            breach_id=breach_id,
            grant_id=grant_id,
            grant_version=1,
            grantee_id=grantee,
            severity="critical",
            access_event_id=str(uuid.uuid4()),
            access_occurred_at=at.isoformat().replace("+00:00", "Z"),
        )
        return to_bytes(event)

    genuine = [
        breach(f"brc_after_{n}_{uuid.uuid4().hex[:8]}", T0 + timedelta(seconds=n)) for n in range(3)
    ]
    [position, *_] = asyncio.run(
        produce_at(system.bootstrap, topics.BREACHES, [breach(refused, T0), *genuine], grant_id)
    )
    [letter] = letters_by_consumer(system, topics.BREACHES, position, {"grant"}).values()
    assert letter.reason == "failed", letter
    assert "refused by the store" in letter.error
    wait_for(
        lambda: system.call("grant", "GET", f"/v1/grants/{grant_id}").json()["status"] == "revoked",
        20,
        "the breach policy revoking after the three breaches behind the refused one",
    )
    assert system.call("grant", "GET", "/readyz", role=None).status_code == 200
