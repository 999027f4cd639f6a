"""A decision's leaf (DESIGN §12): the hand-made encoder gives RFC 8785's bytes, whatever
the strings hold; times are written one way; log names say which partition they are."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carveout_contracts.common import iso_utc
from carveout_enforcement.decision_log import (
    decision_leaf,
    leaf_hashes,
    occurred_text,
    origin,
    partition_of,
)
from carveout_enforcement.rows import DecisionRow
from carveout_runtime.canonical import canonical_json
from carveout_runtime.merkle import leaf_hash

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Any Unicode a JSON reader can hand over: everything but lone surrogates, which no access
# reader accepts (and which neither encoder can write).
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
MICROS = st.integers(
    min_value=round(datetime(2000, 1, 1, tzinfo=UTC).timestamp() * 1_000_000),
    max_value=round(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp() * 1_000_000),
)
VIOLATION = st.fixed_dictionaries(
    {
        "condition_id": TEXT,
        "kind": TEXT,
        "severity": st.sampled_from(["critical", "warning"]),
        "expected": st.lists(TEXT, max_size=3),
        "actual": TEXT,
    }
)


def row(**changes: Any) -> DecisionRow:
    fields: dict[str, Any] = {
        "access_event_id": "7c0b6c1e-3c55-4d1a-9f0e-2b1f0f3f9a10",
        "request_id": "req-1",
        "grantee_id": "org-netsec",
        "model_id": "mythos-preview",
        "grant_id": "grt_01",
        "grant_version": 2,
        "decision": "deny",
        "violations": "[]",
        "occurred_at": 1_789_038_299_000_000,
        "judged_at": 1_789_045_500_000_000,
        "user_id": "u",
        "gateway_id": "gw",
        "units": 10,
    }
    return DecisionRow(**{**fields, **changes})


def reference_leaf(decision: DecisionRow) -> bytes:
    """The leaf as DESIGN §12 defines it, through the RFC 8785 library."""
    return canonical_json(
        {
            "access_event_id": decision.access_event_id,
            "occurred_at": iso_utc(EPOCH + timedelta(microseconds=decision.occurred_at)),
            "grantee_id": decision.grantee_id,
            "model_id": decision.model_id,
            "grant_id": decision.grant_id,
            "grant_version": decision.grant_version,
            "decision": decision.decision,
            "violations": [
                {"condition_id": v["condition_id"], "kind": v["kind"]}
                for v in orjson.loads(decision.violations)
            ],
        }
    )


@settings(max_examples=500, deadline=None)
@given(
    access_event_id=TEXT,
    grantee_id=TEXT,
    model_id=TEXT,
    grant_id=st.none() | TEXT,
    grant_version=st.none() | st.integers(min_value=1, max_value=2**53 - 1),
    decision=st.sampled_from(["allow", "deny"]) | TEXT,
    violations=st.lists(VIOLATION, max_size=4),
    occurred_at=MICROS,
)
def test_the_fast_leaf_is_the_rfc_8785_leaf(violations: list[Any], **fields: Any) -> None:
    decision = row(violations=orjson.dumps(violations).decode(), **fields)
    assert decision_leaf(decision) == reference_leaf(decision)


def test_a_leaf_written_out() -> None:
    violation = {"condition_id": "embargo", "kind": "user_countries", "severity": "critical"}
    leaf = decision_leaf(row(violations=orjson.dumps([violation]).decode()))
    assert leaf == (
        b'{"access_event_id":"7c0b6c1e-3c55-4d1a-9f0e-2b1f0f3f9a10","decision":"deny",'
        b'"grant_id":"grt_01","grant_version":2,"grantee_id":"org-netsec",'
        b'"model_id":"mythos-preview","occurred_at":"2026-09-10T11:04:59.000000Z",'
        b'"violations":[{"condition_id":"embargo","kind":"user_countries"}]}'
    )
    assert orjson.loads(decision_leaf(row(grant_id=None)))["grant_id"] is None


@settings(max_examples=2000, deadline=None)
@given(MICROS)
def test_times_are_written_as_the_stores_write_them(micros: int) -> None:
    assert occurred_text(micros) == iso_utc(EPOCH + timedelta(microseconds=micros))


def test_log_names() -> None:
    assert origin(3) == "carveout.decisions/3"
    assert partition_of("carveout.decisions/3") == 3
    assert partition_of("carveout.decisions/0") == 0
    for other in (
        "carveout.decisions/",
        "carveout.decisions/03",
        "carveout.decisions/-1",
        "carveout.decisions/1.0",
        "carveout.decisions/٣",  # a digit, but not ASCII
        "carveout.decisions/99999999999",
        "carveout.grants",
        "decisions/1",
    ):
        assert partition_of(other) is None, other


@pytest.mark.parametrize("violations", ["[]", '[{"condition_id":"a","kind":"b","x":1}]'])
def test_the_leaf_holds_only_what_the_design_names(violations: str) -> None:
    keys = set(orjson.loads(decision_leaf(row(violations=violations))))
    assert keys == {
        "access_event_id",
        "occurred_at",
        "grantee_id",
        "model_id",
        "grant_id",
        "grant_version",
        "decision",
        "violations",
    }


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            TEXT,
            st.sampled_from(["org-a", "org-b"]) | TEXT,
            st.none() | st.sampled_from(["grt_1"]) | TEXT,
            st.none() | st.integers(min_value=1, max_value=2**53 - 1),
            st.lists(VIOLATION, max_size=2),
            MICROS,
        ),
        max_size=12,
    )
)
def test_a_batch_hashes_each_leaf_as_its_own_leaf_hashes(cases: list[Any]) -> None:
    """The hot path's leaf hashes (shared parts encoded once per batch) are those of the
    leaves one at a time, whatever the strings hold and however the parts repeat."""
    decisions = [
        row(
            access_event_id=event,
            grantee_id=grantee,
            grant_id=grant,
            grant_version=version,
            violations=orjson.dumps(violations).decode(),
            occurred_at=micros,
        )
        for event, grantee, grant, version, violations, micros in cases
    ]
    decisions += decisions[:3]  # the same parts again
    assert leaf_hashes(decisions) == [leaf_hash(decision_leaf(d)) for d in decisions]
