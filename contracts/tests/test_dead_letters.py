"""Dead letters always fit (DESIGN §10): whatever the record, its dead letter is publishable."""

from __future__ import annotations

import hashlib
import json

import pytest

from carveout_contracts import codec, limits, topics
from carveout_contracts.events import MessageDeadLettered


def letter(value: bytes, **extra: object) -> MessageDeadLettered:
    data = codec.dead_letter_data(
        source_topic=topics.GRANTS,
        consumer="enforcement",
        reason="bad_json",
        error=str(extra.pop("error", "not JSON")),
        value=value,
        partition=2,
        offset=41,
        **extra,  # type: ignore[arg-type]
    )
    return MessageDeadLettered(producer="enforcement", key=data.source_topic, data=data)


def test_control_bytes_are_kept_as_base64_not_as_six_byte_escapes() -> None:
    """200 kB of control bytes is valid UTF-8, but as JSON text it is 1.2 MB: too large to
    publish, so the record was retried forever."""
    value = b"\x01" * 200_000
    event = letter(value)
    assert event.data.payload_encoding == "base64"
    assert not event.data.truncated
    assert len(codec.encode_value(event)) < 300_000
    assert codec.original_value(event.data) == value


def test_ordinary_text_is_kept_as_text() -> None:
    value = json.dumps({"type": "grant.issued", "data": {"name": "Ünïcode"}}).encode()
    event = letter(value)
    assert event.data.payload_encoding == "utf-8"
    assert codec.original_value(event.data) == value


def test_a_value_up_to_the_whole_limit_is_kept_whole() -> None:
    value = b"x" * limits.DEAD_LETTER_WHOLE_BYTES
    data = letter(value).data
    assert not data.truncated
    assert codec.original_value(data) == value


def test_a_larger_value_keeps_its_head_size_and_digest_and_its_position() -> None:
    value = bytes(range(256)) * ((limits.DEAD_LETTER_WHOLE_BYTES // 256) + 1)
    data = letter(value).data
    assert data.truncated
    assert data.payload_encoding == "base64"
    assert data.size == len(value)
    assert data.sha256 == hashlib.sha256(value).hexdigest()
    assert codec.head_value(data) == value[: limits.DEAD_LETTER_HEAD_BYTES]
    assert (data.source_topic, data.source_partition, data.source_offset) == (topics.GRANTS, 2, 41)
    with pytest.raises(codec.TruncatedDeadLetter, match=r"carveout.grants 2@41"):
        codec.original_value(data)


def test_the_worst_record_still_gives_a_dead_letter_under_the_record_limit() -> None:
    """Largest whole value, all escapes; hostile key, headers and error: all bounded."""
    control = "\x01" * 20_000
    event = letter(
        b"\x01" * limits.DEAD_LETTER_WHOLE_BYTES,
        key=control.encode(),
        record_headers=[(f"h{n}{control}", control.encode()) for n in range(1000)],
        error=control * 10,
    )
    size = len(codec.encode_value(event))
    assert size < limits.DEFAULT_RECORD_BYTES, size
    data = event.data
    assert len(data.headers) == codec.DEAD_LETTER_HEADERS
    assert data.source_key is not None and len(data.source_key) == codec.DEAD_LETTER_KEY_CHARS
    assert len(data.error) == codec.DEAD_LETTER_ERROR_CHARS
    back = codec.decode(topics.DEADLETTER, codec.encode_value(event))
    assert codec.original_value(back.data) == b"\x01" * limits.DEAD_LETTER_WHOLE_BYTES


def test_an_older_dead_letter_without_the_new_fields_still_reads() -> None:
    event = letter(b"{not json")
    raw = json.loads(codec.encode_value(event))
    for name in ("truncated", "size", "sha256"):
        del raw["data"][name]
    back = codec.decode(topics.DEADLETTER, json.dumps(raw).encode())
    assert not back.data.truncated
    assert codec.original_value(back.data) == b"{not json"
