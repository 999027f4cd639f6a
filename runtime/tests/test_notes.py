"""Signed notes and checkpoints: the C2SP spec's example, Go's sumdb/note vectors, our own
checkpoints, and the malformed notes a verifier must refuse."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from carveout_runtime.keyfiles import current_signing_key
from carveout_runtime.merkle import MerkleLog
from carveout_runtime.notes import (
    MAX_NOTE_BYTES,
    Checkpoint,
    NoteError,
    NoteSigner,
    NoteVerifier,
    note_key_id,
    open_checkpoint,
    open_note,
    parse_note,
    sign_checkpoint,
    sign_note,
)

# golang.org/x/mod/sumdb/note note_test.go: a signer key (0x01 ‖ Ed25519 seed), its
# verifier key, and the exact signed note it produces, plus a second signer's line.
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngo"
    "tpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWL"
    "ox33WWd1RvMc+QQ=\n"
)

# c2sp.org/signed-note, "Verifier keys", Example.
C2SP_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
C2SP_NOTE = (
    "This is an example message.\n"
    "\n"
    "— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmR"
    "KuwHjG1Yu72IneyaQM=\n"
)


def peter_signer() -> NoteSigner:
    # PRIVATE+KEY+<name>+<id>+<base64>: the base64 may itself contain "+".
    encoded = PETER_SKEY.split("+", 4)[-1]
    raw = base64.b64decode(encoded)
    assert raw[0] == 0x01
    return NoteSigner("PeterNeumann", Ed25519PrivateKey.from_private_bytes(raw[1:]))


def test_the_c2sp_example_note_verifies_with_its_verifier_key() -> None:
    verifier = NoteVerifier.from_vkey(C2SP_VKEY)
    assert verifier.vkey() == C2SP_VKEY
    note = open_note(C2SP_NOTE, [verifier])
    assert note.text == "This is an example message.\n"
    assert [s.name for s in note.verified] == ["example.com/foo"]
    assert note.verified[0].key_id.hex() == "530d903a"


def test_signing_reproduces_go_sumdb_notes_byte_for_byte() -> None:
    signer = peter_signer()
    assert signer.verifier.vkey() == PETER_VKEY
    assert signer.verifier.key_id.hex() == "c74f20a3"
    assert sign_note(GO_TEXT, signer) == GO_TEXT + "\n" + PETER_SIG


def test_key_id_is_sha256_of_name_newline_type_and_key() -> None:
    verifier = NoteVerifier.from_vkey(PETER_VKEY)
    digest = hashlib.sha256(b"PeterNeumann\n\x01" + verifier.public_key).digest()
    assert note_key_id("PeterNeumann", verifier.public_key) == digest[:4]
    assert digest[:4].hex() == "c74f20a3"


def test_signatures_by_unknown_keys_are_ignored_and_kept() -> None:
    peter, enoch = NoteVerifier.from_vkey(PETER_VKEY), NoteVerifier.from_vkey(ENOCH_VKEY)
    message = GO_TEXT + "\n" + PETER_SIG + ENOCH_SIG
    note = open_note(message, [peter])
    assert note.text == GO_TEXT
    assert [s.name for s in note.signatures] == ["PeterNeumann", "EnochRoot"]
    assert [s.name for s in note.verified] == ["PeterNeumann"]
    assert [s.name for s in open_note(message, [peter, enoch]).verified] == [
        "PeterNeumann",
        "EnochRoot",
    ]
    with pytest.raises(NoteError, match="no signature by a trusted key"):
        open_note(message, [])


def test_a_known_key_whose_signature_fails_rejects_the_note() -> None:
    peter = NoteVerifier.from_vkey(PETER_VKEY)
    tampered = GO_TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(NoteError, match=r"signature of PeterNeumann\+c74f20a3 does not verify"):
        open_note(tampered, [peter])
    with pytest.raises(NoteError, match="does not verify"):
        open_note(GO_TEXT.replace("answer", "answers") + "\n" + PETER_SIG, [peter])


def test_a_key_with_the_same_name_but_another_id_is_ignored() -> None:
    # The spec: a key is known only when both its name and its id match.
    stranger = NoteSigner("PeterNeumann", Ed25519PrivateKey.generate())
    message = sign_note(GO_TEXT, stranger)
    with pytest.raises(NoteError, match="no signature by a trusted key"):
        open_note(message, [NoteVerifier.from_vkey(PETER_VKEY)])


@pytest.mark.parametrize(
    "message",
    [
        GO_TEXT,
        GO_TEXT + "\n",
        GO_TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + GO_TEXT + "\n" + PETER_SIG,
        GO_TEXT + "\r\n" + PETER_SIG,
        "\udc80" + GO_TEXT + "\n" + PETER_SIG,
        GO_TEXT + "\n" + "— Bad Name " + PETER_SIG.split()[-1] + "\n",
        GO_TEXT + "\n" + "— Bad+Name " + PETER_SIG.split()[-1] + "\n",
        GO_TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
        GO_TEXT + "\n" + PETER_SIG.replace("— ", "- "),
        GO_TEXT + "\n" + PETER_SIG.replace("— ", "—"),
        GO_TEXT + "\n" + PETER_SIG.replace("=\n", "\n"),
        GO_TEXT + "\n" + PETER_SIG.replace(" x08go", "  x08go"),
        GO_TEXT + "\n" + "— PeterNeumann AAAA\n",
        GO_TEXT + "\n" + "— PeterNeumann\n",
        GO_TEXT + "\n" + PETER_SIG * 33,
        GO_TEXT * 400 + "\n" + PETER_SIG,
    ],
)
def test_malformed_notes_are_refused(message: str) -> None:
    peter = NoteVerifier.from_vkey(PETER_VKEY)
    with pytest.raises(NoteError):
        open_note(message, [peter])


def test_malformed_bytes_are_refused() -> None:
    with pytest.raises(NoteError, match="UTF-8"):
        parse_note(b"\xff" + (GO_TEXT + "\n" + PETER_SIG).encode())
    with pytest.raises(NoteError, match="at most"):
        parse_note(b"x" * (MAX_NOTE_BYTES + 1))


@pytest.mark.parametrize(
    "vkey",
    [
        PETER_VKEY.replace("c74f20a3", "c74f20a4"),
        PETER_VKEY.replace("+ARpc", "+ZRpc"),
        PETER_VKEY + "=",
        PETER_VKEY[:-1],
        "Peter+Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        PETER_VKEY.replace("c74f20a3", "C74F20A3"),
    ],
)
def test_damaged_verifier_keys_are_refused(vkey: str) -> None:
    with pytest.raises(NoteError):
        NoteVerifier.from_vkey(vkey)


def test_every_verifier_key_reads_back_whatever_its_base64_holds() -> None:
    # Base64 may hold "+", the separator of a verifier key's parts: 200 keys hold some.
    for _ in range(200):
        verifier = NoteSigner("carveout-grant", Ed25519PrivateKey.generate()).verifier
        assert NoteVerifier.from_vkey(verifier.vkey()) == verifier


SIGNER = NoteSigner("carveout-grant", Ed25519PrivateKey.generate())
note_texts = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters=[chr(c) for c in range(32)])
    | st.just("\n"),
    max_size=200,
).map(lambda text: text + "\n")


@settings(max_examples=200, deadline=None)
@given(text=note_texts)
def test_any_text_signs_and_opens_back_unchanged(text: str) -> None:
    # Blank lines, em dashes and lines that look like signatures inside the text are
    # all kept: the text ends at the last blank line.
    note = open_note(sign_note(text, SIGNER), [SIGNER.verifier])
    assert note.text == text
    assert len(note.verified) == 1


# --- Checkpoints ---


def test_a_checkpoint_round_trips_through_a_signed_note() -> None:
    log = MerkleLog()
    for leaf in (b"a", b"b", b"c"):
        log.append(leaf)
    signer = NoteSigner("carveout-enforcement", Ed25519PrivateKey.generate())
    checkpoint = Checkpoint("carveout.decisions/0", log.size, log.root())
    note = sign_checkpoint(checkpoint, signer)

    body, _, signature = note.partition("\n\n")
    root = base64.b64encode(log.root()).decode()
    assert body + "\n" == f"carveout.decisions/0\n3\n{root}\n"
    assert signature.startswith("\u2014 carveout-enforcement ")
    raw = base64.b64decode(signature.split(" ")[2])
    assert raw[:4] == signer.verifier.key_id
    assert len(raw) == 4 + 64

    assert open_checkpoint(note, [signer.verifier], origin="carveout.decisions/0") == checkpoint
    with pytest.raises(NoteError, match=r"not of 'carveout\.decisions/1'"):
        open_checkpoint(note, [signer.verifier], origin="carveout.decisions/1")


def test_the_c2sp_checkpoint_example_parses() -> None:
    # c2sp.org/tlog-checkpoint's example body (its signer's key is not published).
    text = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    checkpoint = Checkpoint.parse(text)
    assert (checkpoint.origin, checkpoint.size, len(checkpoint.root)) == (
        "example.com/behind-the-sofa",
        20852163,
        32,
    )
    assert checkpoint.body() == text


def test_the_empty_tree_has_a_checkpoint() -> None:
    checkpoint = Checkpoint("carveout.grants", 0, MerkleLog().root())
    assert checkpoint.body() == "carveout.grants\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
    assert Checkpoint.parse(checkpoint.body()) == checkpoint


ROOT = base64.b64encode(bytes(32)).decode()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (f"origin\n3\n{ROOT}", "ends with a newline"),
        ("origin\n3\n", "origin, tree size and root"),
        (f"\n3\n{ROOT}\n", "origin is not empty"),
        (f"origin\n03\n{ROOT}\n", "without leading zeros"),
        (f"origin\n-3\n{ROOT}\n", "without leading zeros"),
        (f"origin\n+3\n{ROOT}\n", "without leading zeros"),
        (f"origin\n 3\n{ROOT}\n", "without leading zeros"),
        (f"origin\n{1 << 64}\n{ROOT}\n", "uint64"),
        ("origin\n3\nAAAA\n", "base64 of 32 bytes"),
        (f"origin\n3\n{ROOT[:-1]}\n", "base64 of 32 bytes"),
        (f"origin\n3\n{ROOT[:-2]}B=\n", "base64 of 32 bytes"),
        (f"origin\n3\n{ROOT}\n\nextension\n", "extension lines are not empty"),
    ],
)
def test_malformed_checkpoints_are_refused(text: str, says: str) -> None:
    with pytest.raises(NoteError, match=says):
        Checkpoint.parse(text)


def test_a_checkpoint_note_with_a_bad_body_is_refused_even_when_signed() -> None:
    signer = NoteSigner("carveout-grant", Ed25519PrivateKey.generate())
    note = sign_note("carveout.grants\n01\n" + ROOT + "\n", signer)
    with pytest.raises(NoteError, match="leading zeros"):
        open_checkpoint(note, [signer.verifier])


def test_signing_refuses_what_could_not_be_read_back() -> None:
    signer = NoteSigner("carveout-grant", Ed25519PrivateKey.generate())
    with pytest.raises(NoteError, match="ends with a newline"):
        sign_note("no newline", signer)
    with pytest.raises(NoteError, match="control characters"):
        sign_note("tab\there\n", signer)
    with pytest.raises(NoteError, match="one non-empty line"):
        Checkpoint("two\nlines", 1, bytes(32)).body()
    with pytest.raises(NoteError, match="32-byte root"):
        Checkpoint("log", 1, bytes(31)).body()
    with pytest.raises(NoteError, match="space, a plus"):
        NoteSigner("carveout grant", Ed25519PrivateKey.generate())


def test_a_service_signs_checkpoints_with_its_event_key(tmp_path: Path) -> None:
    # Enforcement's checkpoint key is the one it signs events with and serves at /v1/keys.
    key = current_signing_key(tmp_path / "keys", "enforcement")
    signer = NoteSigner("carveout-enforcement", key.private_key)
    checkpoint = Checkpoint("carveout.decisions/3", 0, MerkleLog().root())
    note = sign_checkpoint(checkpoint, signer)
    served = NoteVerifier("carveout-enforcement", key.trusted_key().public_key)
    assert open_checkpoint(note, [served]) == checkpoint
