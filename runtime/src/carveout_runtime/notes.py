"""C2SP signed notes (c2sp.org/signed-note) and transparency-log checkpoints
(c2sp.org/tlog-checkpoint), with Ed25519 keys.

A note is a text ending in a newline, a blank line, then signature lines
``— <key name> <base64(4-byte key id ‖ signature)>`` (em dash U+2014). An Ed25519 key's
id is the first 4 bytes of ``SHA-256(name ‖ 0x0A ‖ 0x01 ‖ 32-byte public key)``, and it
signs the text including its final newline. A checkpoint is a note whose text is the
log's origin, its tree size in decimal, and its root hash in base64, one per line.

Notes come from outside (a log's HTTP answers, an evidence file), so reading one is
strict and bounded: at most ``MAX_NOTE_BYTES``, UTF-8 without control characters other
than newline, at most ``MAX_SIGNATURES`` signature lines, canonical base64, and every
malformation is a ``NoteError`` saying what it is. As the spec requires, signatures by
unknown keys are ignored, a known key's failing signature rejects the whole note, and a
note with no verified signature is rejected.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

MAX_NOTE_BYTES = 16 * 1024
MAX_SIGNATURES = 32
"""The spec asks verifiers to accept at least 16 signatures."""
MAX_KEY_NAME_CHARS = 256
ED25519 = 0x01
"""The signed-note signature type of Ed25519."""
_SIGNATURE_PREFIX = "\u2014 "
_TREE_SIZE_RE = re.compile(r"0|[1-9][0-9]{0,19}")
_CONTROL_RE = re.compile(r"[\x00-\x09\x0b-\x1f]")


class NoteError(ValueError):
    """A note that is malformed, or does not verify, and why."""


def _check_key_name(name: str) -> str:
    # Non-empty, no Unicode space, no "+" (it separates the parts of a verifier key).
    if not name or len(name) > MAX_KEY_NAME_CHARS:
        raise NoteError(f"key name must have 1 to {MAX_KEY_NAME_CHARS} characters")
    if "+" in name or any(c.isspace() for c in name) or _CONTROL_RE.search(name):
        raise NoteError(f"key name {name[:64]!r} has a space, a plus or a control character")
    return name


def note_key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte key id of an Ed25519 key: SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4]."""
    if len(public_key) != 32:
        raise ValueError("an Ed25519 public key has 32 bytes")
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public_key).digest()[:4]


def _b64decode(text: str) -> bytes | None:
    """Standard base64 with padding, in its one canonical spelling, or None."""
    try:
        raw = binascii.a2b_base64(text, strict_mode=True)
    except binascii.Error:
        return None
    return raw if base64.b64encode(raw).decode() == text else None


@dataclass(frozen=True)
class _NamedKey:
    """A key under a key name, which every note key's must be (checked when made)."""

    name: str

    def __post_init__(self) -> None:
        _check_key_name(self.name)


@dataclass(frozen=True)
class NoteVerifier(_NamedKey):
    """A trusted public key under its key name."""

    public_key: bytes

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.public_key) != 32:
            raise NoteError("an Ed25519 public key has 32 bytes")

    @property
    def key_id(self) -> bytes:
        """The 4-byte key id that signature lines carry."""
        return note_key_id(self.name, self.public_key)

    def vkey(self) -> str:
        """The verifier key text ``<name>+<hex key id>+<base64(0x01 ‖ public key)>``."""
        encoded = base64.b64encode(bytes([ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        """Read a verifier key text; its key id must match its name and key."""
        # The name has no "+" and the key id is hex, but base64 may hold "+": split twice.
        name, _, rest = vkey[:1024].partition("+")
        key_id, _, encoded = rest.partition("+")
        if len(vkey) > 1024 or not re.fullmatch(r"[0-9a-f]{8}", key_id):
            raise NoteError("a verifier key is <name>+<8 hex digits>+<base64 key>")
        raw = _b64decode(encoded)
        if raw is None or len(raw) != 33 or raw[0] != ED25519:
            raise NoteError("the verifier key is not an Ed25519 key (type 0x01, 32 bytes)")
        verifier = cls(name, raw[1:])
        if verifier.key_id.hex() != key_id:
            raise NoteError(f"key id {key_id} does not match the key and name")
        return verifier

    def verify(self, text: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this key's Ed25519 signature of ``text``."""
        if len(signature) != 64:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, text)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class NoteSigner(_NamedKey):
    """A private key that signs notes under a key name."""

    private_key: Ed25519PrivateKey

    @property
    def verifier(self) -> NoteVerifier:
        """The matching public key, to publish or to trust."""
        public = self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return NoteVerifier(self.name, public)

    def signature_line(self, text: str) -> str:
        """The line ``— <name> <base64(key id ‖ signature)>\\n`` for ``text``."""
        signature = self.private_key.sign(text.encode())
        encoded = base64.b64encode(self.verifier.key_id + signature).decode()
        return f"{_SIGNATURE_PREFIX}{self.name} {encoded}\n"


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: who claims to have signed, and the signature bytes."""

    name: str
    key_id: bytes
    signature: bytes


@dataclass(frozen=True)
class Note:
    """A note's text and signature lines; ``verified`` are those a trusted key checked."""

    text: str
    signatures: tuple[NoteSignature, ...]
    verified: tuple[NoteSignature, ...] = ()


def _check_text(text: str) -> None:
    if _CONTROL_RE.search(text):
        raise NoteError("a note has no control characters other than newline")


def sign_note(text: str, *signers: NoteSigner) -> str:
    """The signed note: ``text`` (ending in a newline), a blank line, one line per signer."""
    if not text.endswith("\n"):
        raise NoteError("a note's text ends with a newline")
    _check_text(text)
    if not signers:
        raise NoteError("a note needs at least one signature")
    return text + "\n" + "".join(signer.signature_line(text) for signer in signers)


def parse_note(note: str | bytes) -> Note:
    """Split a note into its text and signature lines, checking its form (not signatures)."""
    # A character is at least a byte: an over-long text is refused before encoding it.
    if len(note) > MAX_NOTE_BYTES:
        raise NoteError(f"a note is at most {MAX_NOTE_BYTES} bytes")
    try:
        data = note.encode("utf-8") if isinstance(note, str) else note
        if len(data) > MAX_NOTE_BYTES:
            raise NoteError(f"a note is at most {MAX_NOTE_BYTES} bytes")
        note = data.decode("utf-8")
    except UnicodeError as error:
        raise NoteError("a note is valid UTF-8") from error
    _check_text(note)
    # The text ends at the last blank line; everything after it is signature lines.
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("a note has a blank line between its text and its signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block or not block.endswith("\n"):
        raise NoteError("a note ends with at least one signature line and a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"a note has at most {MAX_SIGNATURES} signatures")
    return Note(text, tuple(_parse_signature_line(line) for line in lines))


def _parse_signature_line(line: str) -> NoteSignature:
    if not line.startswith(_SIGNATURE_PREFIX):
        raise NoteError("a signature line starts with an em dash and a space")
    name, space, encoded = line[len(_SIGNATURE_PREFIX) :].partition(" ")
    _check_key_name(name)
    raw = _b64decode(encoded) if space else None
    if raw is None or len(raw) < 5:
        raise NoteError(f"the signature of {name[:64]} is not base64 of a key id and signature")
    return NoteSignature(name, raw[:4], raw[4:])


def open_note(note: str | bytes, verifiers: Iterable[NoteVerifier]) -> Note:
    """Parse ``note`` and check its signatures against the trusted ``verifiers``.

    Signatures by other keys are ignored; a trusted key's signature that fails, or no
    trusted signature at all, rejects the note (``NoteError``).
    """
    known: dict[tuple[str, bytes], NoteVerifier] = {}
    for trusted in verifiers:
        other = known.setdefault((trusted.name, trusted.key_id), trusted)
        if other != trusted:
            raise ValueError(f"two trusted keys are named {trusted.name}+{trusted.key_id.hex()}")
    parsed = parse_note(note)
    text = parsed.text.encode()
    verified: list[NoteSignature] = []
    for signature in parsed.signatures:
        verifier = known.get((signature.name, signature.key_id))
        if verifier is None or signature in verified:
            continue
        if not verifier.verify(text, signature.signature):
            who = f"{signature.name}+{signature.key_id.hex()}"
            raise NoteError(f"the signature of {who} does not verify")
        verified.append(signature)
    if not verified:
        raise NoteError("the note has no signature by a trusted key")
    return Note(parsed.text, parsed.signatures, tuple(verified))


@dataclass(frozen=True)
class Checkpoint:
    """A log's signed state: its origin, its tree size, and the RFC 6962 root at that size."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def body(self) -> str:
        """The checkpoint's note text: origin, size and base64 root lines (then extensions)."""
        if not self.origin or "\n" in self.origin or _CONTROL_RE.search(self.origin):
            raise NoteError("a checkpoint's origin is one non-empty line")
        if not 0 <= self.size < 1 << 64 or len(self.root) != 32:
            raise NoteError("a checkpoint has a uint64 size and a 32-byte root")
        if any(not line or "\n" in line for line in self.extensions):
            raise NoteError("a checkpoint's extension lines are non-empty single lines")
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode()]
        return "\n".join([*lines, *self.extensions]) + "\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Read a checkpoint's note text strictly."""
        if not text.endswith("\n"):
            raise NoteError("a checkpoint's text ends with a newline")
        _check_text(text)
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise NoteError("a checkpoint has origin, tree size and root hash lines")
        origin, size, root, *extensions = lines
        if not origin:
            raise NoteError("a checkpoint's origin is not empty")
        if not _TREE_SIZE_RE.fullmatch(size) or int(size) >= 1 << 64:
            raise NoteError("a checkpoint's tree size is a decimal uint64 without leading zeros")
        raw = _b64decode(root)
        if raw is None or len(raw) != 32:
            raise NoteError("a checkpoint's root hash is the base64 of 32 bytes")
        if any(not line for line in extensions):
            raise NoteError("a checkpoint's extension lines are not empty")
        return cls(origin, int(size), raw, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signer: NoteSigner) -> str:
    """The checkpoint as a note signed by ``signer``."""
    return sign_note(checkpoint.body(), signer)


def open_checkpoint(
    note: str | bytes, verifiers: Iterable[NoteVerifier], *, origin: str | None = None
) -> Checkpoint:
    """The checkpoint in a note signed by a trusted key (of the log ``origin``, if given)."""
    checkpoint = Checkpoint.parse(open_note(note, verifiers).text)
    if origin is not None and checkpoint.origin != origin:
        raise NoteError(f"the checkpoint is of {checkpoint.origin[:128]!r}, not of {origin!r}")
    return checkpoint
