"""Ed25519 signatures on events, and the keys that make and check them.

A producing service signs each record's value bytes and sends the signature in the
Kafka header ``carveout-signature: v1,<kid>,<base64 signature>``; ``kid`` is the hex of
the first 8 bytes of SHA-256 of the raw 32-byte public key. Consumers check it against
the trusted keys ``{"keys": [{"kid", "service", "public_key"}]}`` and act only on
records signed by the service that may produce them. Rotation adds a key: the newest
signs, and the older ones stay trusted so what they signed still verifies. Where keys
are kept on disk is ``keyfiles``'s business; this module does no I/O.

Headers arrive from anyone who can write to a topic, so parsing is bounded and strict:
a header is at most ``MAX_HEADER_BYTES``, the signature exactly 64 bytes in canonical
base64, and every failure has its own reason.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SIGNATURE_HEADER = "carveout-signature"
SIGNATURE_VERSION = "v1"
MAX_HEADER_BYTES = 128
"""Longer than any well-formed header (``v1,`` + 16 + ``,`` + 88 = 108 bytes)."""
MAX_TRUSTED_KEYS_BYTES = 1 << 20
MAX_TRUSTED_KEYS = 1000

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
_KID_RE = re.compile(r"[0-9a-f]{16}")
_SERVICE_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")

# Reasons a record's signature does not count; SignatureCheck.reason is one of these.
OK = "ok"
MISSING_SIGNATURE = "missing signature"
MALFORMED_HEADER = "malformed header"
UNKNOWN_KID = "unknown kid"
OTHER_SERVICE = "key of another service"
BAD_SIGNATURE = "bad signature"


class KeyFileError(ValueError):
    """A private key or trusted-keys document that cannot be used, and why."""


def key_id(public_key: bytes) -> str:
    """The ``kid`` of a raw 32-byte Ed25519 public key: hex of SHA-256's first 8 bytes."""
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise ValueError(f"an Ed25519 public key has {PUBLIC_KEY_SIZE} bytes")
    return hashlib.sha256(public_key).digest()[:8].hex()


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    """The 32-byte RFC 8032 encoding of a public key."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def check_service(service: str) -> str:
    """``service`` if it is a valid service name (it names files and keys), else ValueError."""
    if not _SERVICE_RE.fullmatch(service):
        raise ValueError(f"service name {service!r} is not [a-z][a-z0-9_-]{{0,31}}")
    return service


@dataclass(frozen=True)
class TrustedKey:
    """A public key consumers accept, and the one service whose records it may sign."""

    kid: str
    service: str
    public_key: bytes

    @classmethod
    def of(cls, service: str, public_key: bytes) -> TrustedKey:
        """The entry for ``public_key``, with its ``kid`` computed."""
        return cls(key_id(public_key), check_service(service), public_key)

    def to_json(self) -> dict[str, str]:
        """The entry as it appears in the trusted-keys file."""
        encoded = base64.b64encode(self.public_key).decode()
        return {"kid": self.kid, "service": self.service, "public_key": encoded}


@dataclass(frozen=True)
class SigningKey:
    """A service's private key, the ``n``-th it has had."""

    service: str
    number: int
    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte public key."""
        return raw_public_key(self.private_key.public_key())

    @property
    def kid(self) -> str:
        """The key id that names this key in signature headers and the trusted-keys file."""
        return key_id(self.public_key)

    def trusted_key(self) -> TrustedKey:
        """This key's entry for the trusted-keys file."""
        return TrustedKey(self.kid, self.service, self.public_key)

    def sign(self, value: bytes) -> bytes:
        """The raw 64-byte Ed25519 signature of ``value``."""
        return self.private_key.sign(value)

    def header_value(self, value: bytes) -> str:
        """The ``carveout-signature`` header value for a record whose value is ``value``."""
        signature = base64.b64encode(self.sign(value)).decode()
        return f"{SIGNATURE_VERSION},{self.kid},{signature}"

    def header(self, value: bytes) -> tuple[str, bytes]:
        """The header as a Kafka ``(name, value bytes)`` pair."""
        return SIGNATURE_HEADER, self.header_value(value).encode()


@dataclass(frozen=True)
class SignatureCheck:
    """What checking a record's signature found.

    ``reason`` is ``OK`` or one of the stable reasons above; ``detail`` says precisely
    what was wrong, for logs and dead letters.
    """

    ok: bool
    reason: str
    detail: str
    kid: str | None = None


def _refused(reason: str, detail: str, kid: str | None = None) -> SignatureCheck:
    return SignatureCheck(False, reason, detail, kid)


def _decode_signature(text: str) -> bytes | None:
    """The 64 bytes of a canonical standard-base64 signature, or None."""
    try:
        raw = binascii.a2b_base64(text, strict_mode=True)
    except binascii.Error:
        return None
    # One encoding per signature: reject spare bits set in the last character.
    if len(raw) != SIGNATURE_SIZE or base64.b64encode(raw).decode() != text:
        return None
    return raw


class TrustedKeys:
    """The public keys a consumer accepts, each tied to the service it speaks for."""

    def __init__(self, keys: Iterable[TrustedKey] = ()) -> None:
        self._keys: dict[str, TrustedKey] = {}
        self._verifiers: dict[str, Ed25519PublicKey] = {}
        for key in keys:
            if key.kid != key_id(key.public_key):
                raise KeyFileError(f"kid {key.kid} does not match its public key")
            check_service(key.service)
            known = self._keys.get(key.kid)
            if known is not None and known != key:
                raise KeyFileError(f"kid {key.kid} is listed for {known.service} and {key.service}")
            self._keys[key.kid] = key
            self._verifiers[key.kid] = Ed25519PublicKey.from_public_bytes(key.public_key)
        if len(self._keys) > MAX_TRUSTED_KEYS:
            raise KeyFileError(f"more than {MAX_TRUSTED_KEYS} trusted keys")

    @property
    def keys(self) -> tuple[TrustedKey, ...]:
        """Every trusted key, ordered by service then kid."""
        return tuple(sorted(self._keys.values(), key=lambda k: (k.service, k.kid)))

    def of_service(self, service: str) -> tuple[TrustedKey, ...]:
        """The trusted keys of one service (for ``GET /v1/keys``)."""
        return tuple(k for k in self.keys if k.service == service)

    def with_keys(self, *keys: TrustedKey) -> TrustedKeys:
        """These keys and ``keys`` together (adding a rotated key keeps the old ones)."""
        return TrustedKeys([*self._keys.values(), *keys])

    @classmethod
    def parse(cls, data: bytes) -> TrustedKeys:
        """Read the trusted-keys JSON document; raise ``KeyFileError`` saying what is wrong."""
        if len(data) > MAX_TRUSTED_KEYS_BYTES:
            raise KeyFileError(f"the trusted-keys document exceeds {MAX_TRUSTED_KEYS_BYTES} bytes")
        try:
            document = json.loads(data)
        except (ValueError, UnicodeDecodeError) as error:
            raise KeyFileError(f"the trusted-keys document is not JSON: {error}") from error
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise KeyFileError('the trusted-keys document has no "keys" list')
        if len(entries) > MAX_TRUSTED_KEYS:
            raise KeyFileError(f"more than {MAX_TRUSTED_KEYS} trusted keys")
        return cls(_parse_entry(i, entry) for i, entry in enumerate(entries))

    def dumps(self) -> bytes:
        """The trusted-keys JSON document."""
        document = {"keys": [key.to_json() for key in self.keys]}
        return json.dumps(document, indent=2).encode() + b"\n"

    def verify(
        self, value: bytes, header_value: str | bytes | None, *, service: str
    ) -> SignatureCheck:
        """Whether ``header_value`` is a valid signature of ``value`` by ``service``."""
        if header_value is None:
            return _refused(MISSING_SIGNATURE, f"no {SIGNATURE_HEADER} header")
        if len(header_value) > MAX_HEADER_BYTES:
            return _refused(MALFORMED_HEADER, f"header longer than {MAX_HEADER_BYTES} bytes")
        if isinstance(header_value, bytes):
            header_value = header_value.decode("latin-1")
        if not header_value.isascii():
            return _refused(MALFORMED_HEADER, "header is not ASCII")
        parts = header_value.split(",")
        if len(parts) != 3:
            return _refused(MALFORMED_HEADER, "header is not v1,<kid>,<signature>")
        version, kid, encoded = parts
        if version != SIGNATURE_VERSION:
            return _refused(MALFORMED_HEADER, f"unsupported signature version {version[:8]!r}")
        if not _KID_RE.fullmatch(kid):
            return _refused(MALFORMED_HEADER, "kid is not 16 lowercase hex digits")
        signature = _decode_signature(encoded)
        if signature is None:
            return _refused(MALFORMED_HEADER, "signature is not 64 bytes of canonical base64", kid)
        key = self._keys.get(kid)
        if key is None:
            return _refused(UNKNOWN_KID, f"kid {kid} is not a trusted key", kid)
        if key.service != service:
            detail = f"kid {kid} is a key of {key.service}, not of {service}"
            return _refused(OTHER_SERVICE, detail, kid)
        try:
            self._verifiers[kid].verify(signature, value)
        except InvalidSignature:
            detail = f"signature does not match the value under kid {kid}"
            return _refused(BAD_SIGNATURE, detail, kid)
        return SignatureCheck(True, OK, f"signed by {service} with kid {kid}", kid)

    def verify_headers(
        self,
        value: bytes,
        headers: Iterable[tuple[str, bytes | str]] | Mapping[str, bytes | str],
        *,
        service: str,
    ) -> SignatureCheck:
        """``verify`` with the header looked up in a record's headers; two are malformed."""
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        found = [v for name, v in pairs if name.lower() == SIGNATURE_HEADER]
        if len(found) > 1:
            return _refused(MALFORMED_HEADER, f"{len(found)} {SIGNATURE_HEADER} headers")
        return self.verify(value, found[0] if found else None, service=service)


def _parse_entry(index: int, entry: Any) -> TrustedKey:
    where = f"keys[{index}]"
    if not isinstance(entry, dict):
        raise KeyFileError(f"{where} is not an object")
    kid, service, encoded = (entry.get(name) for name in ("kid", "service", "public_key"))
    if not (isinstance(kid, str) and _KID_RE.fullmatch(kid)):
        raise KeyFileError(f"{where}.kid is not 16 lowercase hex digits")
    if not (isinstance(service, str) and _SERVICE_RE.fullmatch(service)):
        raise KeyFileError(f"{where}.service is not a service name")
    if not isinstance(encoded, str) or len(encoded) > 64:
        raise KeyFileError(f"{where}.public_key is not a base64 string")
    try:
        public_key = binascii.a2b_base64(encoded, strict_mode=True)
    except binascii.Error as error:
        raise KeyFileError(f"{where}.public_key is not base64: {error}") from error
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise KeyFileError(f"{where}.public_key is not {PUBLIC_KEY_SIZE} bytes")
    if key_id(public_key) != kid:
        raise KeyFileError(f"{where}.kid does not match its public key")
    return TrustedKey(kid, service, public_key)
