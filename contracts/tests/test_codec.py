"""Decoding messages off the wire: poison reasons, tolerance, upcasting, dead letters."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from carveout_contracts import codec, events, topics
from carveout_contracts.codec import PoisonMessage, decode
from carveout_contracts.consistency import BadConsistencyToken, decode_token
from carveout_contracts.events import (
    TOPIC_UNIONS,
    AccessRecorded,
    GrantIssued,
    MessageDeadLettered,
)

Golden = Callable[[str], dict[str, Any]]


def dumps(raw: Any) -> bytes:
    return json.dumps(raw).encode()


def poison(topic: str, value: bytes | str | None) -> PoisonMessage:
    with pytest.raises(PoisonMessage) as caught:
        decode(topic, value)
    return caught.value


# --------------------------------------------------------------------------- poison reasons


@pytest.mark.parametrize(
    "value",
    [b"{not json", b"", b"   ", b'{"type": "grant.issued"', b"\xff\xfe\x00garbage", None],
    ids=["truncated", "empty", "blank", "unterminated", "not-utf8", "none"],
)
def test_bad_json_is_poison(value: bytes | None) -> None:
    error = poison(topics.GRANTS, value)
    assert error.reason == "bad_json"
    assert str(error).startswith("bad_json: ")


def test_non_object_json_is_invalid() -> None:
    assert poison(topics.GRANTS, b"[1, 2]").reason == "invalid"
    assert poison(topics.GRANTS, b'"grant.issued"').reason == "invalid"


def test_unknown_type_is_poison(golden: Golden) -> None:
    raw = golden("grant.issued")
    raw["type"] = "grant.transferred"
    error = poison(topics.GRANTS, dumps(raw))
    assert error.reason == "unknown_type"
    assert "grant.transferred" in error.error


def test_missing_type_is_unknown_type(golden: Golden) -> None:
    raw = golden("grant.issued")
    del raw["type"]
    assert poison(topics.GRANTS, dumps(raw)).reason == "unknown_type"


@pytest.mark.parametrize(
    ("event_type", "topic"),
    [
        ("grant.issued", topics.ACCESS),
        ("access.recorded", topics.GRANTS),
        ("condition.breached", topics.NOTIFICATIONS),
        ("notification.failed", topics.BREACHES),
        ("message.dead_lettered", topics.GRANTS),
    ],
)
def test_type_of_another_topic_is_unknown_type(golden: Golden, event_type: str, topic: str) -> None:
    error = poison(topic, dumps(golden(event_type)))
    assert error.reason == "unknown_type"
    assert event_type in error.error
    assert topic in error.error


def test_unknown_topic_is_unknown_type(golden: Golden) -> None:
    assert poison("carveout.nope", dumps(golden("grant.issued"))).reason == "unknown_type"


def test_newer_version_is_unsupported(golden: Golden) -> None:
    raw = golden("access.recorded")
    raw["version"] = events.CURRENT_VERSION["access.recorded"] + 1
    error = poison(topics.ACCESS, dumps(raw))
    assert error.reason == "unsupported_version"
    assert "newer" in error.error


def test_older_version_without_upcaster_is_unsupported(golden: Golden) -> None:
    raw = golden("access.recorded")
    raw["version"] = 0
    error = poison(topics.ACCESS, dumps(raw))
    assert error.reason == "unsupported_version"
    assert "no upcaster" in error.error


@pytest.mark.parametrize("version", ["1", "one", 1.5, None, [1]])
def test_non_integer_version_is_invalid(golden: Golden, version: Any) -> None:
    raw = golden("access.recorded")
    raw["version"] = version
    assert poison(topics.ACCESS, dumps(raw)).reason == "invalid"


def test_boolean_version_is_invalid(golden: Golden) -> None:
    raw = golden("access.recorded")
    raw["version"] = True
    assert poison(topics.ACCESS, dumps(raw)).reason == "invalid"


@pytest.mark.parametrize("with_key", [True, False], ids=["key", "no-key"])
def test_missing_model_id_is_invalid_and_named(golden: Golden, with_key: bool) -> None:
    raw = golden("access.recorded")
    del raw["data"]["model_id"]
    if not with_key:
        del raw["key"]
    error = poison(topics.ACCESS, dumps(raw))
    assert error.reason == "invalid"
    assert "model_id" in error.error
    assert "required" in error.error.lower()


def test_invalid_field_value_is_named(golden: Golden) -> None:
    raw = golden("access.recorded")
    raw["data"]["units"] = -5
    error = poison(topics.ACCESS, dumps(raw))
    assert error.reason == "invalid"
    assert "data.units" in error.error


def test_naive_timestamp_is_invalid(golden: Golden) -> None:
    raw = golden("access.recorded")
    raw["occurred_at"] = "2026-09-10T11:04:59"
    error = poison(topics.ACCESS, dumps(raw))
    assert error.reason == "invalid"
    assert "occurred_at" in error.error


@pytest.mark.parametrize("data", [[1, 2], "text", 7, None])
def test_non_object_data_without_key_is_invalid(golden: Golden, data: Any) -> None:
    raw = golden("grant.issued")
    del raw["key"]
    raw["data"] = data
    assert poison(topics.GRANTS, dumps(raw)).reason == "invalid"


# --------------------------------------------------------------------------- tolerance


def test_unknown_fields_are_ignored_in_envelope_and_data(golden: Golden) -> None:
    plain = decode(topics.GRANTS, dumps(golden("grant.issued")))
    raw = golden("grant.issued")
    raw["partition_hint"] = 4
    raw["schema"] = {"name": "future"}
    raw["data"]["risk_tier"] = "high"
    raw["data"]["grantee"]["country"] = "US"
    raw["data"]["grantee"]["contacts"][0]["secret_hint"] = "x"
    raw["data"]["conditions"][0]["note"] = "added later"
    raw["data"]["breach_policy"]["notify"] = True
    event = decode(topics.GRANTS, dumps(raw))
    assert isinstance(event, GrantIssued)
    assert event == plain
    dumped = json.loads(event.model_dump_json())
    assert "partition_hint" not in dumped
    assert "risk_tier" not in dumped["data"]


def test_decode_accepts_str_and_bytes(golden: Golden) -> None:
    raw = golden("access.recorded")
    assert decode(topics.ACCESS, json.dumps(raw)) == decode(topics.ACCESS, dumps(raw))


def test_key_is_defaulted_when_decoding(golden: Golden) -> None:
    raw = golden("access.recorded")
    del raw["key"]
    event = decode(topics.ACCESS, dumps(raw))
    assert event.key == raw["data"]["grantee_id"]


def test_encode_value_is_compact_json(golden: Golden) -> None:
    event = decode(topics.ACCESS, dumps(golden("access.recorded")))
    value = codec.encode_value(event)
    assert b"\n" not in value
    assert json.loads(value) == golden("access.recorded")


def test_headers_carry_content_type_and_a_traceparent() -> None:
    fresh = dict(codec.headers())
    assert fresh["content-type"] == b"application/json"
    assert re.fullmatch(rb"00-[0-9a-f]{32}-[0-9a-f]{16}-01", fresh["traceparent"])
    assert dict(codec.headers())["traceparent"] != fresh["traceparent"]
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert codec.headers(trace) == [
        ("content-type", b"application/json"),
        ("traceparent", trace.encode()),
    ]


# --------------------------------------------------------------------------- upcasting


def _access_v0(golden: Golden) -> dict[str, Any]:
    """A made-up version 0 of access.recorded: ``country`` and ``tokens`` were renamed."""
    raw = golden("access.recorded")
    raw["version"] = 0
    data = raw["data"]
    data["country"] = data.pop("user_country")
    data["tokens"] = data.pop("units")
    return raw


def _access_v0_to_v1(raw: dict[str, Any]) -> dict[str, Any]:
    data = dict(raw["data"])
    data["user_country"] = data.pop("country")
    data["units"] = data.pop("tokens")
    return {**raw, "version": 1, "data": data}


def test_old_version_is_upcast_and_parses(golden: Golden, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "UPCASTERS", {})
    codec.upcaster("access.recorded", 0)(_access_v0_to_v1)
    registered = codec.UPCASTERS
    assert registered == {("access.recorded", 0): _access_v0_to_v1}

    event = decode(topics.ACCESS, dumps(_access_v0(golden)))

    assert isinstance(event, AccessRecorded)
    assert event.version == 1
    assert event.data.user_country == "KP"
    assert event.data.units == 5120
    assert event == decode(topics.ACCESS, dumps(golden("access.recorded")))


def test_same_old_payload_is_poison_without_the_upcaster(
    golden: Golden, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(codec, "UPCASTERS", {})
    assert poison(topics.ACCESS, dumps(_access_v0(golden))).reason == "unsupported_version"


def test_upcast_chains_steps_up_to_the_current_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "UPCASTERS", {})
    monkeypatch.setitem(events.CURRENT_VERSION, "grant.issued", 3)
    assert codec.CURRENT_VERSION["grant.issued"] == 3  # the codec reads the same table
    seen: list[int] = []

    @codec.upcaster("grant.issued", 1)
    def one_to_two(raw: dict[str, Any]) -> dict[str, Any]:
        seen.append(raw["version"])
        return {**raw, "version": 2, "data": {**raw["data"], "step": [1]}}

    @codec.upcaster("grant.issued", 2)
    def two_to_three(raw: dict[str, Any]) -> dict[str, Any]:
        seen.append(raw["version"])
        return {**raw, "version": 3, "data": {**raw["data"], "step": [*raw["data"]["step"], 2]}}

    out = codec.upcast({"type": "grant.issued", "version": 1, "data": {}})

    assert out == {"type": "grant.issued", "version": 3, "data": {"step": [1, 2]}}
    assert seen == [1, 2]
    # Already current: left alone. Missing step: unsupported.
    assert codec.upcast(out) == out
    del codec.UPCASTERS[("grant.issued", 2)]
    with pytest.raises(PoisonMessage) as caught:
        codec.upcast({"type": "grant.issued", "version": 1, "data": {}})
    assert caught.value.reason == "unsupported_version"


def test_upcast_rejects_unknown_types() -> None:
    with pytest.raises(PoisonMessage) as caught:
        codec.upcast({"type": "nope", "version": 1})
    assert caught.value.reason == "unknown_type"


# --------------------------------------------------------------------------- dead letters


def test_dead_letter_keeps_utf8_payload_as_text() -> None:
    value = '{"type": "grant.issued", "note": "café"}'.encode()
    data = codec.dead_letter_data(
        source_topic=topics.GRANTS,
        consumer="enforcement",
        reason="invalid",
        error="grant.issued.data: Field required",
        value=value,
        partition=2,
        offset=41,
        key=b"grt_1",
        record_headers=[("content-type", b"application/json")],
    )
    assert data.payload_encoding == "utf-8"
    assert data.payload == value.decode()
    assert codec.original_value(data) == value
    assert data.source_partition == 2
    assert data.source_offset == 41
    assert data.source_key == "grt_1"
    assert data.headers == {"content-type": "application/json"}


def test_dead_letter_keeps_non_utf8_bytes_as_base64() -> None:
    value = b"\x00\xff\xfe{binary\x80\xc3("
    data = codec.dead_letter_data(
        source_topic=topics.ACCESS,
        consumer="enforcement",
        reason="bad_json",
        error="not JSON",
        value=value,
        key=b"\xffkey",
        record_headers={"traceparent": b"00-abc", "x-bin": b"\xff"},
    )
    assert data.payload_encoding == "base64"
    assert base64.b64decode(data.payload) == value
    assert codec.original_value(data) == value
    assert data.source_key == "\ufffdkey"
    assert data.headers == {"traceparent": "00-abc", "x-bin": "\ufffd"}


def test_dead_letter_survives_its_own_event(golden: Golden) -> None:
    value = b"\x89PNG\r\n\x1a\n\x00\x00"
    data = codec.dead_letter_data(
        source_topic=topics.ACCESS,
        consumer="enforcement",
        reason="bad_json",
        error="x" * 5000,
        value=value,
    )
    assert len(data.error) == codec.DEAD_LETTER_ERROR_CHARS
    event = MessageDeadLettered(producer="enforcement", data=data)
    assert event.key == topics.ACCESS
    back = decode(topics.DEADLETTER, codec.encode_value(event))
    assert codec.original_value(back.data) == value


def test_dead_letter_of_empty_value() -> None:
    data = codec.dead_letter_data(
        source_topic=topics.GRANTS, consumer="grant", reason="bad_json", error="empty", value=None
    )
    assert data.payload == ""
    assert codec.original_value(data) == b""


@pytest.mark.parametrize("topic", sorted(TOPIC_UNIONS))
@pytest.mark.parametrize("value", [b"[" * 5000 + b"]" * 5000, b'{"a":' * 6000 + b"1" + b"}" * 6000])
def test_json_nested_past_the_parser_is_poison_not_a_crash(topic: str, value: bytes) -> None:
    with pytest.raises(PoisonMessage) as caught:
        decode(topic, value)
    assert caught.value.reason == "bad_json"


def test_a_consistency_token_nested_past_the_parser_is_refused() -> None:
    body = base64.urlsafe_b64encode(b"[" * 5000 + b"]" * 5000).decode().rstrip("=")
    with pytest.raises(BadConsistencyToken):
        decode_token("ct1." + body)
