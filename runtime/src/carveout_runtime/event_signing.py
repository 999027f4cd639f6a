"""A service's side of signed events (DESIGN §12): the key it signs with, and the trusted
keys it checks what it consumes against.

Which service speaks for which topic is fixed here: a grant event is the grant
service's word, a breach and an acknowledgement enforcement's, a notification outcome the
notification service's. Access events come from gateways and are not signed; a
checkpoint is a signed note itself.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carveout_contracts import topics

from .keyfiles import current_signing_key, load_signing_keys, load_trusted_keys
from .notes import NoteSigner, NoteVerifier
from .signing import SIGNATURE_HEADER, SigningKey, TrustedKeys, raw_public_key

log = logging.getLogger("carveout.signing")

SIGNED_BY: Mapping[str, str] = {
    topics.GRANTS: "grant",
    topics.BREACHES: "enforcement",
    topics.ACKS: "enforcement",
    topics.NOTIFICATIONS: "notification",
}
"""The service whose key must have signed each record of a topic."""

NOTE_KEY_NAMES: Mapping[str, str] = {
    "grant": "carveout-grant",
    "enforcement": "carveout-enforcement",
}
"""The signed-note key name of each service that signs transparency-log checkpoints."""


@dataclass
class TrustedKeysFile:
    """The trusted-keys file, read again when it changes (a rotation adds a key)."""

    path: Path
    _keys: TrustedKeys = field(init=False)
    _stamp: tuple[int, int] = field(init=False, default=(0, 0))

    def __post_init__(self) -> None:
        self._keys = self._read()

    def _read(self) -> TrustedKeys:
        stat = self.path.stat()
        keys = load_trusted_keys(self.path)
        self._stamp = (stat.st_mtime_ns, stat.st_size)
        return keys

    def current(self) -> TrustedKeys:
        try:
            stat = self.path.stat()
        except OSError:
            return self._keys  # moved away for a moment: keep what was trusted
        if (stat.st_mtime_ns, stat.st_size) != self._stamp:
            try:
                self._keys = self._read()
            except (OSError, ValueError) as error:
                log.error(
                    "trusted keys %s unreadable, keeping the previous ones: %s", self.path, error
                )
        return self._keys


@dataclass
class EventSigning:
    """What a service signs with and verifies against; either may be off (``None``)."""

    service: str
    key: SigningKey | None = None
    """The key new events are signed with: the service's newest."""
    keys: list[SigningKey] = field(default_factory=list)
    """Every key the service has had, newest last (served at ``GET /v1/keys``)."""
    trusted: TrustedKeysFile | None = None

    @classmethod
    def of(cls, service: str, keys_dir: Path | None, trusted_keys: Path | None) -> EventSigning:
        """The service's keys under ``keys_dir`` (its first made when it has none), and the
        trusted keys in ``trusted_keys``; a missing or malformed file is an error at start."""
        key = current_signing_key(keys_dir, service) if keys_dir is not None else None
        keys = load_signing_keys(keys_dir, service) if keys_dir is not None else []
        trusted = TrustedKeysFile(trusted_keys) if trusted_keys is not None else None
        return cls(service, key, keys, trusted)

    def sign(self, value: bytes, headers: dict[str, str]) -> dict[str, str]:
        """``headers`` with the ``carveout-signature`` of ``value`` (unchanged when unsigned)."""
        if self.key is not None:
            headers[SIGNATURE_HEADER] = self.key.header_value(value)
        return headers

    def refusal(self, topic: str, value: bytes, headers: Iterable[tuple[str, Any]]) -> str | None:
        """Why a consumed record's signature is refused, or ``None`` when it is accepted
        (or its topic is not signed, or verification is off)."""
        signer = SIGNED_BY.get(topic)
        if signer is None or self.trusted is None:
            return None
        check = self.trusted.current().verify_headers(value, list(headers or ()), service=signer)
        return None if check.ok else f"{check.reason}: {check.detail}"

    def note_signer(self) -> NoteSigner | None:
        """What signs the service's checkpoints: its current key under its note key name,
        or ``None`` when it has no key or signs no checkpoints."""
        name = NOTE_KEY_NAMES.get(self.service)
        if self.key is None or name is None:
            return None
        return NoteSigner(name, self.key.private_key)

    def public_keys(self) -> list[dict[str, Any]]:
        """The service's public keys, newest first, for ``GET /v1/keys``."""
        answer = []
        for key in reversed(self.keys):
            entry: dict[str, Any] = {**key.trusted_key().to_json(), "current": key is self.keys[-1]}
            note_name = NOTE_KEY_NAMES.get(self.service)
            if note_name is not None:
                entry["note_verifier_key"] = NoteVerifier(
                    note_name, raw_public_key(key.private_key.public_key())
                ).vkey()
            answer.append(entry)
        return answer
