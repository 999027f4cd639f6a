"""``read_access`` (the fast path) agrees with the pydantic contract on every payload.

For any bytes, either both readings reject them (``PoisonMessage``) or both accept them
with the same ``Access``. The generated payloads are valid ``access.recorded`` events
and mutations of them: missing fields, wrong types, lower-case or padded countries,
white space, booleans and floats for units, other versions and types, extra fields,
bad timestamps, lists and strings over the contract's limits, and times outside the
bounds of ``occurred_at`` (DESIGN §10), which the contract reading here checks with
datetimes, independently of the float comparison ``read_access`` makes. Disagreements
found earlier are pinned down by the examples at the end.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from carveout_contracts import PoisonMessage, codec, limits, topics
from carveout_enforcement.access import Access, read_access, received_at

NOW = datetime(2040, 1, 1, tzinfo=UTC)
"""When the accesses below were received: the generated times fall on both sides of it."""
SKEW = 300.0

GOLDEN = Path(__file__).resolve().parents[4] / "contracts" / "golden"
GOLDEN_ACCESS: dict[str, Any] = json.loads((GOLDEN / "access.recorded.v1.json").read_bytes())
DATA_FIELDS = [
    "request_id",
    "grantee_id",
    "model_id",
    "grant_id",
    "user_id",
    "user_country",
    "deployment_region",
    "purpose",
    "safeguards",
    "units",
    "gateway_id",
]
ENVELOPE_FIELDS = ["event_id", "type", "version", "occurred_at", "producer", "key", "data"]
IDENTIFIERS = [
    "request_id",
    "grantee_id",
    "model_id",
    "user_id",
    "deployment_region",
    "purpose",
    "gateway_id",
]
# White space, and the ASCII separators U+001C..U+001F, which Python's str.strip removes
# and the contract's does not.
WHITESPACE = [" ", "\t", "\n", "\r", "\x0b", "\x0c", "\x85", "\xa0", "\u2003", "\u3000"]
SEPARATORS = ["\x1c", "\x1f"]


def contract(value: bytes) -> Access:
    event = codec.decode(topics.ACCESS, value)
    latest = NOW + timedelta(seconds=SKEW)
    if not limits.EARLIEST_OCCURRED_AT <= event.occurred_at <= latest:
        raise PoisonMessage("invalid", "occurred_at out of bounds")
    return Access.of(event)


def read_at_now(value: bytes | None) -> Access:
    """The fast reading, received at ``NOW``."""
    return read_access(value, NOW.timestamp(), max_future_skew_s=SKEW)


def reading(read: Any, value: bytes) -> Access | str:
    """The ``Access`` read, or ``"poison: <reason>"``; any other exception fails the test."""
    try:
        result: Access = read(value)
    except PoisonMessage as poison:
        return f"poison: {poison.reason}"
    return result


def fields(access: Access) -> dict[str, Any]:
    names = [
        "event_id",
        "occurred_at",
        "request_id",
        "grantee_id",
        "model_id",
        "grant_id",
        "user_id",
        "user_country",
        "deployment_region",
        "purpose",
        "safeguards",
        "units",
        "gateway_id",
    ]
    return {name: getattr(access, name) for name in names}


def assert_agree(value: bytes, *, note: bool = False) -> None:
    fast, slow = reading(read_at_now, value), reading(contract, value)
    if isinstance(fast, str) or isinstance(slow, str):
        # both reject (the reasons may differ only if the fast path rejected first: it never
        # rejects on its own, it hands the payload to the contract)
        assert fast == slow, (fast, slow)
        if note:
            event(f"both reject ({fast})")
        return
    if note:
        event("both accept")

    assert fields(fast) == fields(slow)


# --------------------------------------------------------------------------- generators

ident_chars = st.one_of(
    st.sampled_from("abcxyz-_.019"),
    st.characters(codec="utf-8", exclude_categories=("Cs", "Zs", "Cc", "Zl", "Zp")),
)
identifiers = st.text(ident_chars, min_size=1, max_size=12)
long_identifiers = st.sampled_from(["x" * 200, "x" * 201, "é" * 200, "😀" * 200, "😀" * 201])
padding = st.sampled_from(["", "", "", "", "", *WHITESPACE, *SEPARATORS])
country_padding = st.sampled_from(["", "", "", *WHITESPACE])


@st.composite
def padded(
    draw: st.DrawFn, inner: st.SearchStrategy[str], pad: st.SearchStrategy[str] = padding
) -> str:
    return draw(pad) + draw(inner) + draw(pad)


offsets = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
)


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    # mostly recent times; sometimes the ends of the range, which an offset can push out
    near = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1))
    ends = st.sampled_from(
        [
            datetime(1, 1, 1),
            datetime(9999, 12, 31, 23, 59, 59, 999999),
            # the bounds of occurred_at, and a microsecond either side
            datetime(2000, 1, 1),
            datetime(1999, 12, 31, 23, 59, 59, 999999),
            datetime(2000, 1, 1, 0, 0, 0, 1),
            datetime(2040, 1, 1, 0, 5),
            datetime(2040, 1, 1, 0, 5, 0, 1),
            datetime(2040, 1, 1, 0, 4, 59, 999999),
        ]
    )
    moment = draw(st.one_of(near, near, near, near, ends)).replace(tzinfo=draw(offsets))
    spec = draw(st.sampled_from(["auto", "seconds", "milliseconds", "microseconds"]))
    text = moment.isoformat(timespec=spec)
    if spec == "microseconds" and draw(st.booleans()):
        text = text[:26] + draw(st.sampled_from(["0", "5", "9", "999"])) + text[26:]
    style = draw(st.sampled_from(["plain", "z", "space", "lower"]))
    if style == "z":
        text = text.replace("+00:00", "Z")
    elif style == "space":
        text = text.replace("T", " ")
    elif style == "lower":
        text = text.replace("+00:00", "z").replace("T", "t")
    return text


@st.composite
def event_ids(draw: st.DrawFn) -> str:
    value = draw(st.uuids())
    form = draw(st.sampled_from(["plain", "plain", "upper", "hex", "braces", "urn"]))
    return {
        "plain": str(value),
        "upper": str(value).upper(),
        "hex": value.hex,
        "braces": "{" + str(value) + "}",
        "urn": value.urn,
    }[form]


@st.composite
def valid_payloads(draw: st.DrawFn) -> dict[str, Any]:
    data: dict[str, Any] = {name: draw(padded(identifiers)) for name in IDENTIFIERS}
    letters = st.sampled_from("USGBINKPusgbinkp")
    data["user_country"] = draw(
        padded(st.builds(lambda a, b: a + b, letters, letters), country_padding)
    )
    if draw(st.booleans()):
        data["safeguards"] = draw(st.lists(padded(identifiers), max_size=4))
    if draw(st.booleans()):
        data["units"] = draw(st.integers(0, 10**12))
    grant = draw(st.sampled_from(["absent", "null", "value"]))
    if grant == "null":
        data["grant_id"] = None
    elif grant == "value":
        data["grant_id"] = draw(padded(identifiers))
    payload: dict[str, Any] = {
        "event_id": draw(event_ids()),
        "type": "access.recorded",
        "version": 1,
        "occurred_at": draw(timestamps()),
        "producer": draw(padded(identifiers)),
        "data": data,
    }
    if draw(st.integers(0, 3)) == 0:  # now and then one identifier at or over 200 characters
        long_value = draw(padded(long_identifiers))
        if draw(st.booleans()):
            payload["producer"] = long_value
        else:
            data[draw(st.sampled_from(IDENTIFIERS))] = long_value
    key = draw(st.sampled_from(["absent", "grantee", "other"]))
    if key == "grantee":
        payload["key"] = data["grantee_id"]
    elif key == "other":
        payload["key"] = draw(st.text(max_size=10))
    return payload


odd_values = st.sampled_from(
    [None, True, False, 0, 1, -1, 1.5, "", " ", "x", [], ["x"], {}, {"a": 1}]
)
bad_timestamps = st.sampled_from(
    [
        "2026-09-10T11:04:59",  # no offset
        "2026-09-10",
        "11:04:59Z",
        "yesterday",
        "",
        "2026-13-01T00:00:00Z",  # the right shape, an impossible date
        "2026-02-29T00:00:00Z",
        "2026-09-10T25:00:00Z",
        "2026-09-10T11:04:59 Z",
        " 2026-09-10T11:04:59Z",
        1789038299,
        1789038299.5,
        "1789038299",
    ]
)


@st.composite
def mutated_payloads(draw: st.DrawFn) -> dict[str, Any]:
    payload = draw(valid_payloads())
    data = payload["data"]
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(
            st.sampled_from(
                [
                    "drop_envelope",
                    "drop_data",
                    "odd_envelope",
                    "odd_data",
                    "version",
                    "type",
                    "units",
                    "country",
                    "timestamp",
                    "extra",
                    "safeguards",
                    "identifier",
                ]
            )
        )
        if kind == "drop_envelope":
            payload.pop(draw(st.sampled_from(ENVELOPE_FIELDS)), None)
        elif kind == "drop_data":
            data.pop(draw(st.sampled_from(DATA_FIELDS)), None)
        elif kind == "odd_envelope":
            payload[draw(st.sampled_from(ENVELOPE_FIELDS))] = draw(odd_values)
        elif kind == "odd_data":
            data[draw(st.sampled_from(DATA_FIELDS))] = draw(odd_values)
        elif kind == "version":
            payload["version"] = draw(st.sampled_from([2, 0, -1, "1", True, 1.0, None, 10**30]))
        elif kind == "type":
            payload["type"] = draw(
                st.sampled_from(["access.deleted", "grant.issued", "ACCESS.RECORDED", None, 1])
            )
        elif kind == "units":
            data["units"] = draw(
                st.sampled_from([True, False, -1, 1.0, 2.5, "5", " 5", None, 10**20, -(10**20)])
            )
        elif kind == "country":
            data["user_country"] = draw(
                st.sampled_from(["us", "Us", "usa", "u", "", "12", "u s", "ÜS", " us ", "U\u0301S"])
            )
        elif kind == "timestamp":
            payload["occurred_at"] = draw(bad_timestamps)
        elif kind == "extra":
            target = draw(st.sampled_from([payload, data]))
            target[draw(st.sampled_from(["extra", "note", "ttl"]))] = draw(odd_values)
        elif kind == "safeguards":
            data["safeguards"] = draw(
                st.sampled_from(
                    [
                        "mfa",
                        [1],
                        [""],
                        [" "],
                        [None],
                        ["mfa", "mfa"],
                        {"mfa": True},
                        # at and over the contract's limits: 64 safeguards of 200 characters
                        [f"s{i}" for i in range(64)],
                        [f"s{i}" for i in range(65)],
                        ["s" * 200],
                        ["s" * 201],
                        [" " + "s" * 200],
                        ["😀" * 201],
                    ]
                )
            )
        else:
            data[draw(st.sampled_from(IDENTIFIERS))] = draw(
                st.sampled_from(["", " ", "x" * 201, " " + "x" * 200, "x" * 200 + "\n"])
            )
    return payload


# --------------------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_payloads())
def test_valid_payloads_read_the_same_both_ways(payload: dict[str, Any]) -> None:
    value = json.dumps(payload).encode()
    assert_agree(value, note=True)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_payloads())
def test_mutated_payloads_read_the_same_both_ways(payload: dict[str, Any]) -> None:
    value = json.dumps(payload).encode()
    assert_agree(value, note=True)


@settings(max_examples=50, deadline=None)
@given(st.one_of(st.binary(max_size=40), st.just(b""), st.just(b"[]"), st.just(b"null")))
def test_arbitrary_bytes_are_rejected_both_ways(value: bytes) -> None:
    assert_agree(value, note=True)


# --------------------------------------------------------------------------- examples


def golden_with(**changes: Any) -> bytes:
    payload = json.loads(json.dumps(GOLDEN_ACCESS))
    data = changes.pop("data", {})
    payload.update(changes)
    payload["data"].update(data)
    return json.dumps(payload).encode()


def test_the_golden_access_is_read_with_every_field() -> None:
    read = read_at_now((GOLDEN / "access.recorded.v1.json").read_bytes())
    assert read.event_id == "0f8e2d7c-5b4a-4c39-8e21-7d6c5b4a3f29"
    assert read.occurred_at == datetime(2026, 9, 10, 11, 4, 59, tzinfo=UTC).timestamp()
    assert read.occurred == datetime(2026, 9, 10, 11, 4, 59, tzinfo=UTC)
    assert (read.request_id, read.grantee_id, read.model_id) == (
        "req_4f7a2c9e1b3d",
        "org-netsec",
        "mythos-preview",
    )
    assert read.grant_id == "grt_01JYXK6R3B4C5D6E7F8G9H0JKM"
    assert (read.user_id, read.user_country, read.deployment_region) == ("u-1842", "KP", "us-east")
    assert read.purpose == "vulnerability-scanning"
    assert read.safeguards == frozenset({"access_logging", "mfa"})
    assert (read.units, read.gateway_id) == (5120, "gw-us-east-1")


def test_the_common_case_does_not_need_the_full_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hot path reads an ordinary access without pydantic."""

    def unavailable(*args: Any) -> Any:
        raise AssertionError("the full model was used for an ordinary access")

    monkeypatch.setattr(codec, "decode", unavailable)
    assert read_at_now(golden_with()).units == 5120


def test_defaults_and_normalisation() -> None:
    payload = json.loads(golden_with())
    del payload["data"]["safeguards"], payload["data"]["units"], payload["data"]["grant_id"]
    payload["data"]["user_country"] = " in "
    payload["data"]["user_id"] = "  u-7\n"
    payload["occurred_at"] = "2026-09-10T16:34:59+05:30"
    read = read_at_now(json.dumps(payload).encode())
    assert (read.safeguards, read.units, read.grant_id) == (frozenset(), 0, None)
    assert (read.user_country, read.user_id) == ("IN", "u-7")
    assert read.occurred == datetime(2026, 9, 10, 11, 4, 59, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "reason", "names"),
    [
        (None, "bad_json", ""),
        (b"", "bad_json", ""),
        (b"{not json", "bad_json", ""),
        (golden_with(type="access.deleted"), "unknown_type", "access.deleted"),
        (golden_with(type="grant.issued"), "unknown_type", "grant.issued"),
        (golden_with(version=2), "unsupported_version", "version 2"),
        (golden_with(version=True), "invalid", "version"),
        (golden_with(data={"units": -1}), "invalid", "data.units"),
        (golden_with(data={"user_country": "USA"}), "invalid", "data.user_country"),
        (golden_with(data={"user_id": ""}), "invalid", "data.user_id"),
        (golden_with(occurred_at="2026-09-10T11:04:59"), "invalid", "occurred_at"),
        (golden_with(event_id="not-a-uuid"), "invalid", "event_id"),
    ],
)
def test_poison_is_named(value: bytes | None, reason: str, names: str) -> None:
    with pytest.raises(PoisonMessage) as caught:
        read_at_now(value)
    assert caught.value.reason == reason
    assert names in caught.value.error


# --------------------------------------------------------------------------- regressions
# Each of these disagreed, or let a non-poison exception escape, in an earlier version.


@pytest.mark.parametrize("missing", ["event_id", "occurred_at"])
@pytest.mark.parametrize("user_id", ["u-1", " u-1"], ids=["plain", "padded"])
def test_an_access_without_event_id_or_occurred_at_is_poison(missing: str, user_id: str) -> None:
    """Never defaulted on the wire: a random event_id defeats idempotence by event_id, and
    'now' for occurred_at judges the access as of processing time."""
    payload = json.loads(golden_with(data={"user_id": user_id}))
    del payload[missing]
    with pytest.raises(PoisonMessage) as caught:
        read_at_now(json.dumps(payload).encode())
    assert caught.value.reason == "invalid"
    assert missing in caught.value.error


@pytest.mark.parametrize(
    "moment",
    [
        "2026-09-10T11:04:59.1234567Z",
        "2026-09-10T11:04:59.9999999Z",
        "2026-09-10T11:04:59.0000005Z",
        "2026-12-30T23:59:59.9999999Z",
    ],
)
def test_sub_microsecond_fractions_read_the_same_both_ways(moment: str) -> None:
    """Rounding in one reading and truncating in the other moved accesses across a second."""
    assert_agree(golden_with(occurred_at=moment))


@pytest.mark.parametrize(
    "moment",
    ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+00:01"],
)
@pytest.mark.parametrize("user_id", ["u-1", " u-1"], ids=["plain", "padded"])
def test_out_of_range_timestamps_are_poison(moment: str, user_id: str) -> None:
    """Out of range once in UTC: PoisonMessage, not an OverflowError that stalls a batch."""
    with pytest.raises(PoisonMessage) as caught:
        read_at_now(golden_with(occurred_at=moment, data={"user_id": user_id}))
    assert caught.value.reason == "invalid"


@pytest.mark.parametrize("units", [2**53, 2**63, 2**64 + 1])
def test_units_beyond_exact_json_numbers_are_poison(units: int) -> None:
    with pytest.raises(PoisonMessage) as caught:
        read_at_now(golden_with(data={"units": units}))
    assert "units" in caught.value.error
    assert read_at_now(golden_with(data={"units": 2**53 - 1})).units == 2**53 - 1


@pytest.mark.parametrize("separator", ["\x1c", "\x1d", "\x1e", "\x1f"])
def test_ascii_separators_read_the_same_both_ways(separator: str) -> None:
    """White space to Python's str.strip, but not to the contract's strip."""
    assert_agree(golden_with(data={"user_id": f"u-1{separator}"}))
    assert_agree(golden_with(data={"user_country": f"{separator}us"}))
    assert_agree(golden_with(producer=f"{separator}gw"))


@pytest.mark.parametrize(
    "event_id",
    ["0f8e2d7c-5b4a4c39-8e21-7d6c5b4a3f29", "uuid:0f8e2d7c-5b4a-4c39-8e21-7d6c5b4a3f29"],
)
def test_odd_uuid_spellings_read_the_same_both_ways(event_id: str) -> None:
    assert_agree(golden_with(event_id=event_id))


@pytest.mark.parametrize(
    "moment",
    ["20260910T110459Z", "2026-W37-4T11:04:59Z", "2026-09-10T11Z", "2026-09-10T11:04:59+05"],
)
def test_iso_forms_outside_rfc_3339_read_the_same_both_ways(moment: str) -> None:
    assert_agree(golden_with(occurred_at=moment))


def test_a_long_producer_reads_the_same_both_ways() -> None:
    assert_agree(golden_with(producer="x" * 201))


IMPOSSIBLE_TIMES = [
    "2026-13-01T00:00:00Z",
    "2026-00-10T00:00:00Z",
    "2026-09-31T00:00:00Z",
    "2026-02-29T00:00:00Z",
    "2026-09-10T25:00:00Z",
    "2026-09-10T11:60:00Z",
    "2026-09-10T11:04:60Z",
    "2026-09-10T11:04:59+25:00",
    "0000-01-01T00:00:00Z",
]


@pytest.mark.parametrize("moment", IMPOSSIBLE_TIMES)
def test_impossible_times_are_poison(moment: str) -> None:
    with pytest.raises(PoisonMessage) as caught:
        read_at_now(golden_with(occurred_at=moment))
    assert caught.value.reason == "invalid"


# --------------------------------------------------------------------------- occurred_at bounds


@pytest.mark.parametrize(
    ("moment", "accepted"),
    [
        ("2000-01-01T00:00:00Z", True),
        ("2000-01-01T05:30:00+05:30", True),
        ("1999-12-31T23:59:59.999999Z", False),
        ("2000-01-01T05:29:59+05:30", False),
        ("0001-01-01T00:00:00Z", False),
        ("2040-01-01T00:05:00Z", True),
        ("2040-01-01T00:05:00.000001Z", False),
        ("2039-12-31T16:05:00.000001-08:00", False),
        ("9999-12-31T23:59:59Z", False),
        ("9999-12-31T23:59:59.999999Z", False),  # a float past the last datetime
    ],
)
@pytest.mark.parametrize("user_id", ["u-1", " u-1"], ids=["fast", "full-model"])
def test_occurred_at_is_bounded_both_ways(moment: str, accepted: bool, user_id: str) -> None:
    """From 2000-01-01 to the time received plus the skew, on the fast and the full path
    (a padded user id takes the full model's)."""
    value = golden_with(occurred_at=moment, data={"user_id": user_id})
    assert_agree(value)
    if accepted:
        assert read_at_now(value).occurred == datetime.fromisoformat(moment)
        return
    with pytest.raises(PoisonMessage) as caught:
        read_at_now(value)
    assert caught.value.reason == "invalid"
    assert caught.value.error.startswith("occurred_at: ")
    assert ("2000-01-01" if moment < "2000-01-02" else "300s after") in caught.value.error


def test_the_future_bound_follows_the_skew_and_the_time_received() -> None:
    value = golden_with(occurred_at="2040-01-01T00:10:00Z")
    with pytest.raises(PoisonMessage):
        read_at_now(value)
    assert read_access(value, NOW.timestamp(), max_future_skew_s=600).units == 5120
    later = (NOW + timedelta(minutes=5)).timestamp()
    assert read_access(value, later, max_future_skew_s=SKEW).units == 5120


class _Record:
    def __init__(self, timestamp: Any) -> None:
        self.timestamp = timestamp


def test_received_at_is_the_records_append_time_not_the_readers_clock() -> None:
    """A replay reads the record long after: judged by its append time, it is judged as
    live judged it."""
    appended = NOW.timestamp()
    replayed_much_later = appended + 86400 * 365
    assert received_at(_Record(round(appended * 1000)), replayed_much_later) == appended
    assert received_at(_Record(None), replayed_much_later) == replayed_much_later
    assert received_at(_Record(-1), replayed_much_later) == replayed_much_later
    assert received_at(object(), replayed_much_later) == replayed_much_later


@pytest.mark.parametrize("count", [64, 65])
@pytest.mark.parametrize("user_id", ["u-1", " u-1"], ids=["fast", "full-model"])
def test_safeguards_are_limited_both_ways(count: int, user_id: str) -> None:
    value = golden_with(data={"safeguards": [f"s{i}" for i in range(count)], "user_id": user_id})
    assert_agree(value)
    if count <= limits.MAX_SAFEGUARDS:
        assert len(read_at_now(value).safeguards) == count
        return
    with pytest.raises(PoisonMessage) as caught:
        read_at_now(value)
    assert caught.value.reason == "invalid"
    assert "data.safeguards" in caught.value.error
    assert "at most 64 items" in caught.value.error


@pytest.mark.parametrize("value", [b"[" * 5000 + b"]" * 5000, b'{"a":' * 6000 + b"1" + b"}" * 6000])
def test_json_nested_past_the_parser_is_poison_on_the_fast_path_too(value: bytes) -> None:
    with pytest.raises(PoisonMessage) as caught:
        read_access(value, 0.0)
    assert caught.value.reason == "bad_json"
