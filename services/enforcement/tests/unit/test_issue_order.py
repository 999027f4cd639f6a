"""A grant covers only the accesses the log received at or after its ``grant.issued``.

Whether a grant existed for an access is decided by the log's record timestamps, not by
how far behind the access consumer runs: an access appended before the grant was issued
has no grant (``no_active_grant``/``unknown``) even when the grant's validity covers its
``occurred_at``; the same access appended after is judged against the grant. A grant
issued without a record timestamp covers every access.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carveout_contracts import codec, topics
from carveout_enforcement.access import Access, read_access
from carveout_enforcement.domain import GrantView, apply
from carveout_enforcement.freshness import WholeLogRead
from carveout_enforcement.handlers.access import AccessPipeline
from carveout_enforcement.handlers.grants import GrantIndex, GrantProjector
from carveout_enforcement.judge import (
    BREACH_NAMESPACE,
    compile_grant,
    judge,
    uuid5_hex,
    uuid5_str,
)
from carveout_enforcement.outbox import BreachOutbox
from carveout_enforcement.store import DecisionRecord, EnforcementStore
from carveout_runtime.inbound import Inbound
from carveout_runtime.stores import make_engine

GOLDEN = Path(__file__).resolve().parents[4] / "contracts" / "golden"
GRANT_ID = "grt_01JYXK6R3B4C5D6E7F8G9H0JKM"  # the golden grant, for org-netsec
ISSUED_MS = 1_790_000_000_000
"""When the log received the golden grant in these tests (a record timestamp)."""


def golden(event_type: str) -> Any:
    return codec.decode(topics.GRANTS, (GOLDEN / f"{event_type}.v1.json").read_bytes())


def issued_event(grant_id: str = GRANT_ID) -> Any:
    raw = json.loads((GOLDEN / "grant.issued.v1.json").read_bytes())
    raw["event_id"] = str(uuid.uuid4())
    raw["key"] = raw["data"]["grant_id"] = grant_id
    return codec.decode(topics.GRANTS, json.dumps(raw).encode())


def view(appended_ms: int | None, grant_id: str = GRANT_ID) -> GrantView:
    made = apply(None, issued_event(grant_id), grant_id, appended_ms)
    assert made is not None
    return made


def access_bytes(event_id: str | None = None, **data: Any) -> bytes:
    """The golden access (inside the golden grant's validity) by a user in the US: compliant."""
    raw = json.loads((GOLDEN / "access.recorded.v1.json").read_bytes())
    raw["event_id"] = event_id or str(uuid.uuid4())
    raw["data"].update({"user_country": "US", **data})
    return json.dumps(raw).encode()


def compliant() -> Access:
    received = datetime(2026, 9, 10, 11, 5, tzinfo=UTC).timestamp()  # just after it happened
    return read_access(access_bytes(), received)


# --------------------------------------------------------------------------- the projection


def test_the_issue_record_time_is_kept_through_later_versions() -> None:
    first = view(ISSUED_MS)
    assert first.issued_ms == ISSUED_MS

    later = first
    for event_type in ("grant.amended", "grant.suspended", "grant.reinstated"):
        after = apply(later, golden(event_type), GRANT_ID, ISSUED_MS + 10_000)
        assert after is not None
        assert after.version > later.version  # the event did apply
        later = after
    assert later.issued_ms == ISSUED_MS

    again = apply(later, issued_event(), GRANT_ID, ISSUED_MS + 99_000)  # a repeated issue
    assert again is later


def test_the_compiled_grant_carries_the_issue_time_and_none_covers_everything() -> None:
    assert compile_grant(view(ISSUED_MS)).issued_ms == ISSUED_MS
    assert compile_grant(view(None)).issued_ms == -math.inf


def test_the_issue_time_survives_a_restart(tmp_path: Path) -> None:
    store = EnforcementStore(make_engine(f"sqlite:///{tmp_path}/e.db"))
    store.save_grants(
        [view(ISSUED_MS)], event_id=str(uuid.uuid4()), topic=topics.GRANTS, at=datetime.now(UTC)
    )
    [loaded] = list(store.load_grants())
    index = GrantIndex([loaded])

    assert loaded.issued_ms == ISSUED_MS
    assert index.candidates_received_by("org-netsec", "mythos-preview", ISSUED_MS - 1) == []
    store.engine.dispose()


async def test_the_projector_takes_the_issue_time_from_the_record_being_consumed(
    tmp_path: Path,
) -> None:
    store = EnforcementStore(make_engine(f"sqlite:///{tmp_path}/e.db"))
    index = GrantIndex([])
    projector = GrantProjector(store, index, retry_attempts=1)
    await projector(issued_event(), Inbound.at(ISSUED_MS))
    await projector(golden("grant.suspended"), Inbound.at(ISSUED_MS + 5))

    current = index.get(GRANT_ID)
    assert current is not None
    assert current.issued_ms == ISSUED_MS
    assert [v.issued_ms for v in store.load_grants()] == [ISSUED_MS]
    store.engine.dispose()


# --------------------------------------------------------------------------- candidates


def test_a_grant_is_a_candidate_only_for_accesses_received_at_or_after_its_issue() -> None:
    index = GrantIndex([view(ISSUED_MS)])
    find = index.candidates_received_by

    assert find("org-netsec", "mythos-preview", ISSUED_MS - 1) == []
    assert [g.grant_id for g in find("org-netsec", "mythos-preview", ISSUED_MS)] == [GRANT_ID]
    assert [g.grant_id for g in find("org-netsec", "mythos-preview", ISSUED_MS + 1)] == [GRANT_ID]
    assert [g.grant_id for g in find("org-netsec", "mythos-preview", None)] == [GRANT_ID]
    assert find("org-other", "mythos-preview", ISSUED_MS + 1) == []


def test_each_grant_of_a_grantee_counts_from_its_own_issue() -> None:
    early, late = "grt_a_early", "grt_b_late"
    index = GrantIndex([view(ISSUED_MS, early), view(ISSUED_MS + 1000, late)])

    def found(appended_ms: int) -> list[str]:
        return [
            g.grant_id
            for g in index.candidates_received_by("org-netsec", "mythos-preview", appended_ms)
        ]

    assert found(ISSUED_MS - 1) == []
    assert found(ISSUED_MS) == [early]
    assert found(ISSUED_MS + 500) == [early]
    assert found(ISSUED_MS + 999) == [early]
    assert found(ISSUED_MS + 1000) == [early, late]


def test_a_grant_issued_without_a_record_time_covers_every_access() -> None:
    index = GrantIndex([view(None), view(ISSUED_MS, "grt_z_timed")])
    found = index.candidates_received_by("org-netsec", "mythos-preview", 0)
    assert [g.grant_id for g in found] == [GRANT_ID]


# --------------------------------------------------------------------------- judging


def test_an_access_received_before_the_issue_has_no_grant_though_validity_covers_it() -> None:
    index = GrantIndex([view(ISSUED_MS)])
    access = compliant()
    assert access.grant_id == GRANT_ID  # it even names the grant

    before = judge(
        access, index.candidates_received_by("org-netsec", "mythos-preview", ISSUED_MS - 1), {}
    )
    after = judge(
        access, index.candidates_received_by("org-netsec", "mythos-preview", ISSUED_MS), {}
    )

    assert before.decision == "deny"
    assert [(v["kind"], v["actual"]) for v in before.violations] == [("no_active_grant", "unknown")]
    assert (before.grant_id, before.usage) == (None, [])
    assert after.decision == "allow"
    assert (after.grant_id, after.grant_version, after.violations) == (GRANT_ID, 1, [])


@dataclass
class AccessRecord:
    """What the pipeline reads of an aiokafka ``ConsumerRecord``, with its timestamp."""

    value: bytes
    timestamp: int | None
    offset: int = 0
    topic: str = topics.ACCESS
    partition: int = 0
    key: bytes | None = b"org-netsec"
    headers: tuple[tuple[str, bytes], ...] = ()


async def test_the_pipeline_judges_each_access_by_when_the_log_received_it(
    tmp_path: Path,
) -> None:
    store = EnforcementStore(make_engine(f"sqlite:///{tmp_path}/e.db"))
    published: list[bytes] = []

    async def publish(value: bytes, topic: str, key: bytes, traceparent: str | None) -> None:
        published.append(value)

    async def set_aside(record: Any, reason: str, error: str) -> None:
        raise AssertionError(f"nothing here is set aside ({reason}: {error})")

    pipeline = AccessPipeline(
        store,
        GrantIndex([view(ISSUED_MS)]),
        WholeLogRead(),
        {},
        breaches=BreachOutbox(store, publish),
        set_aside=set_aside,
    )
    early, on_time, late, untimed = (str(uuid.uuid4()) for _ in range(4))
    await pipeline.process(
        [
            AccessRecord(access_bytes(early), ISSUED_MS - 1, offset=0),
            AccessRecord(access_bytes(on_time), ISSUED_MS, offset=1),
            AccessRecord(access_bytes(late), ISSUED_MS + 60_000, offset=2),
            AccessRecord(access_bytes(untimed), None, offset=3),
        ]
    )

    page = store.page(DecisionRecord, limit=10)
    decisions = {d.access_event_id: d for d in page.items}
    assert decisions[early].decision == "deny"
    assert json.loads(decisions[early].violations)[0]["actual"] == "unknown"
    assert decisions[early].grant_id is None
    for allowed in (on_time, late, untimed):
        assert (decisions[allowed].decision, decisions[allowed].grant_id) == ("allow", GRANT_ID)
    [breach] = [codec.decode(topics.BREACHES, v) for v in published]
    assert str(breach.data.access_event_id) == early
    assert breach.data.grant_id is None
    store.engine.dispose()


# --------------------------------------------------------------------------- fast uuid5


NAMESPACES = (
    st.sampled_from([uuid.NAMESPACE_URL, uuid.NAMESPACE_DNS, BREACH_NAMESPACE]) | st.uuids()
)


@given(namespace=NAMESPACES, name=st.text())
def test_uuid5_hex_and_str_are_uuid5(namespace: uuid.UUID, name: str) -> None:
    expected = uuid.uuid5(namespace, name)
    assert uuid5_hex(namespace, name) == expected.hex
    assert uuid5_str(namespace, name) == str(expected)
    assert uuid.UUID(uuid5_str(namespace, name)).version == 5


@pytest.mark.parametrize("name", ["", "a", "é/𝄞", "x" * 10_000])
def test_uuid5_of_edge_names(name: str) -> None:
    assert uuid5_str(uuid.NAMESPACE_URL, name) == str(uuid.uuid5(uuid.NAMESPACE_URL, name))
