"""Signed events at the consumer (DESIGN §12): a grant event, breach, acknowledgement or
notification outcome without a valid signature of its service is dead-lettered
``bad_signature`` and has no effect; replay leaves it out of what it folds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from carveout_contracts import topics
from carveout_runtime.consumers import EventHandler
from carveout_runtime.event_signing import EventSigning
from carveout_runtime.inbound import Inbound
from carveout_runtime.keyfiles import current_signing_key, rotate_signing_key, save_trusted_keys
from carveout_runtime.replay import ReplayReport, fold
from carveout_runtime.signing import SIGNATURE_HEADER, TrustedKeys

GOLDEN = Path(__file__).resolve().parents[2] / "contracts" / "golden"
ISSUED = (GOLDEN / "grant.issued.v1.json").read_bytes()


@dataclass
class Record:
    topic: str
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    partition: int = 0
    offset: int = 0
    timestamp: int = 0
    key: bytes | None = None


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    """A key for each signing service, and the trusted-keys file naming them."""
    trusted = TrustedKeys(
        current_signing_key(tmp_path, service).trusted_key()
        for service in ("grant", "enforcement", "notification")
    )
    save_trusted_keys(tmp_path / "trusted-keys.json", trusted)
    return tmp_path


def signed_by(keys: Path, service: str, value: bytes) -> tuple[tuple[str, bytes], ...]:
    headers = EventSigning.of(service, keys, None).sign(value, {})
    return tuple((name, text.encode()) for name, text in headers.items())


class Consumer:
    def __init__(self, signatures: EventSigning) -> None:
        self.processed: list[str] = []
        self.dead: list[tuple[str, str]] = []
        self.handler = EventHandler(
            topics.GRANTS,
            is_processed=lambda _event_id: False,
            process=self.process,
            dead_letter=self.dead_letter,
            retry_attempts=1,
            signatures=signatures,
        )

    async def process(self, event: Any, _inbound: Inbound) -> None:
        self.processed.append(event.type)

    async def dead_letter(
        self, _value: bytes, reason: str, error: str, _message: Any, _health: Any = None
    ) -> None:
        self.dead.append((reason, error))


def verifying(keys: Path) -> EventSigning:
    return EventSigning.of("enforcement", None, keys / "trusted-keys.json")


async def test_a_grant_event_signed_by_the_grant_service_is_processed(keys: Path) -> None:
    consumer = Consumer(verifying(keys))
    await consumer.handler.handle(
        ISSUED, Record(topics.GRANTS, ISSUED, signed_by(keys, "grant", ISSUED))
    )
    assert consumer.processed == ["grant.issued"]
    assert consumer.dead == []


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ((), "missing signature"),
        (((SIGNATURE_HEADER, b"v1,nonsense"),), "malformed header"),
    ],
)
async def test_an_unsigned_or_malformed_grant_event_is_set_aside(
    keys: Path, headers: tuple[tuple[str, bytes], ...], reason: str
) -> None:
    consumer = Consumer(verifying(keys))
    await consumer.handler.handle(ISSUED, Record(topics.GRANTS, ISSUED, headers))
    assert consumer.processed == []
    [(dead_reason, error)] = consumer.dead
    assert dead_reason == "bad_signature"
    assert error.startswith(reason)


async def test_a_grant_event_signed_by_another_service_is_set_aside(keys: Path) -> None:
    consumer = Consumer(verifying(keys))
    forged = signed_by(keys, "enforcement", ISSUED)  # a real key, but not the grant service's
    await consumer.handler.handle(ISSUED, Record(topics.GRANTS, ISSUED, forged))
    assert consumer.processed == []
    assert consumer.dead[0][0] == "bad_signature"
    assert "key of another service" in consumer.dead[0][1]


async def test_a_changed_value_no_longer_matches_its_signature(keys: Path) -> None:
    consumer = Consumer(verifying(keys))
    headers = signed_by(keys, "grant", ISSUED)
    changed = ISSUED.replace(b"org-netsec", b"org-forged")
    assert changed != ISSUED
    await consumer.handler.handle(changed, Record(topics.GRANTS, changed, headers))
    assert consumer.processed == []
    assert consumer.dead[0][1].startswith("bad signature")


async def test_a_rotated_key_signs_and_the_old_one_still_verifies(keys: Path) -> None:
    old_headers = signed_by(keys, "grant", ISSUED)
    new_key = rotate_signing_key(keys, "grant")
    trusted_file = keys / "trusted-keys.json"
    consumer = Consumer(verifying(keys))
    save_trusted_keys(
        trusted_file, TrustedKeys.parse(trusted_file.read_bytes()).with_keys(new_key.trusted_key())
    )
    new_headers = signed_by(keys, "grant", ISSUED)
    assert dict(new_headers)[SIGNATURE_HEADER].split(b",")[1].decode() == new_key.kid
    for headers in (old_headers, new_headers):  # the consumer reads the rotated file again
        await consumer.handler.handle(ISSUED, Record(topics.GRANTS, ISSUED, headers))
    assert consumer.processed == ["grant.issued", "grant.issued"]


async def test_without_trusted_keys_nothing_is_checked() -> None:
    consumer = Consumer(EventSigning("enforcement"))
    await consumer.handler.handle(ISSUED, Record(topics.GRANTS, ISSUED))
    assert consumer.processed == ["grant.issued"]


async def test_replay_folds_only_what_carries_a_valid_signature(keys: Path) -> None:
    records = [
        Record(topics.GRANTS, ISSUED, signed_by(keys, "grant", ISSUED), offset=0),
        Record(topics.GRANTS, ISSUED, (), offset=1),
    ]
    folded: list[int] = []

    async def process(_event: Any, inbound: Inbound) -> None:
        folded.append(inbound.offset)

    report = ReplayReport("test", "sqlite://")
    await fold(
        records,
        report,
        is_processed=lambda _event_id: False,
        process=process,
        signatures=verifying(keys),
    )
    assert folded == [0]
    assert report.poison == 1
