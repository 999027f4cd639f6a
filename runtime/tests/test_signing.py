"""Event signatures and their keys: key files, rotation, the trusted-keys file, and every
reason a signature is refused."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from carveout_runtime import keyfiles
from carveout_runtime.keyfiles import (
    current_signing_key,
    load_signing_keys,
    load_trusted_keys,
    rotate_signing_key,
    save_trusted_keys,
)
from carveout_runtime.signing import (
    BAD_SIGNATURE,
    MALFORMED_HEADER,
    MISSING_SIGNATURE,
    OK,
    OTHER_SERVICE,
    SIGNATURE_HEADER,
    UNKNOWN_KID,
    KeyFileError,
    SigningKey,
    TrustedKey,
    TrustedKeys,
    key_id,
)

VALUE = b'{"type":"grant.issued","data":{}}'


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    return tmp_path / "var" / "keys"


@pytest.fixture
def grant_key(keys_dir: Path) -> SigningKey:
    return current_signing_key(keys_dir, "grant")


@pytest.fixture
def trusted(keys_dir: Path, grant_key: SigningKey) -> TrustedKeys:
    enforcement = current_signing_key(keys_dir, "enforcement")
    return TrustedKeys([grant_key.trusted_key(), enforcement.trusted_key()])


def test_kid_is_hex_of_the_first_8_bytes_of_sha256_of_the_raw_public_key(
    grant_key: SigningKey,
) -> None:
    assert len(grant_key.public_key) == 32
    assert grant_key.kid == hashlib.sha256(grant_key.public_key).hexdigest()[:16]
    assert key_id(bytes(32)) == hashlib.sha256(bytes(32)).hexdigest()[:16]


def test_a_header_is_v1_kid_and_the_base64_signature_of_the_value(grant_key: SigningKey) -> None:
    name, value = grant_key.header(VALUE)
    assert name == SIGNATURE_HEADER == "carveout-signature"
    version, kid, encoded = value.decode().split(",")
    assert (version, kid) == ("v1", grant_key.kid)
    public = Ed25519PublicKey.from_public_bytes(grant_key.public_key)
    public.verify(base64.b64decode(encoded, validate=True), VALUE)  # raises if wrong


def test_keys_are_created_private_in_a_private_directory(keys_dir: Path) -> None:
    key = current_signing_key(keys_dir, "grant")
    path = keys_dir / "grant-1.key"
    assert key.number == 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    assert [p.name for p in keys_dir.iterdir()] == ["grant-1.key"]  # no temporary left
    assert current_signing_key(keys_dir, "grant").public_key == key.public_key  # loaded again


def test_a_key_file_readable_by_others_is_refused(keys_dir: Path) -> None:
    current_signing_key(keys_dir, "grant")
    (keys_dir / "grant-1.key").chmod(0o644)
    with pytest.raises(KeyFileError, match="readable by others"):
        load_signing_keys(keys_dir, "grant")


def test_a_damaged_key_file_is_refused(keys_dir: Path) -> None:
    keys_dir.mkdir(parents=True)
    path = keys_dir / "grant-1.key"
    path.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match="not an unencrypted PEM private key"):
        load_signing_keys(keys_dir, "grant")


def test_rotation_signs_with_the_new_key_and_old_signatures_still_verify(
    keys_dir: Path, grant_key: SigningKey
) -> None:
    old_header = grant_key.header_value(VALUE)
    new_key = rotate_signing_key(keys_dir, "grant")
    assert (new_key.number, new_key.kid != grant_key.kid) == (2, True)
    assert current_signing_key(keys_dir, "grant").kid == new_key.kid
    assert [k.number for k in load_signing_keys(keys_dir, "grant")] == [1, 2]

    trusted = TrustedKeys([grant_key.trusted_key()]).with_keys(new_key.trusted_key())
    assert trusted.verify(VALUE, old_header, service="grant").ok
    assert trusted.verify(VALUE, new_key.header_value(VALUE), service="grant").ok
    # A consumer that has not yet heard of the new key says so precisely.
    stale = TrustedKeys([grant_key.trusted_key()])
    assert stale.verify(VALUE, new_key.header_value(VALUE), service="grant").reason == UNKNOWN_KID


def test_services_keep_their_own_key_sequences(keys_dir: Path) -> None:
    current_signing_key(keys_dir, "grant")
    rotate_signing_key(keys_dir, "grant")
    assert current_signing_key(keys_dir, "notification").number == 1
    assert [k.service for k in load_signing_keys(keys_dir, "grant")] == ["grant", "grant"]


def test_a_good_signature_is_ok(trusted: TrustedKeys, grant_key: SigningKey) -> None:
    check = trusted.verify(VALUE, grant_key.header_value(VALUE), service="grant")
    assert (check.ok, check.reason, check.kid) == (True, OK, grant_key.kid)
    name, value = grant_key.header(VALUE)
    assert trusted.verify_headers(
        VALUE, [("traceparent", b"00-x"), (name, value)], service="grant"
    ).ok
    assert trusted.verify_headers(VALUE, {name: value.decode()}, service="grant").ok


def test_a_missing_signature(trusted: TrustedKeys) -> None:
    check = trusted.verify(VALUE, None, service="grant")
    assert (check.ok, check.reason) == (False, MISSING_SIGNATURE)
    check = trusted.verify_headers(VALUE, [("content-type", b"application/json")], service="grant")
    assert check.reason == MISSING_SIGNATURE


def test_a_signature_of_another_value_is_bad(trusted: TrustedKeys, grant_key: SigningKey) -> None:
    check = trusted.verify(VALUE + b" ", grant_key.header_value(VALUE), service="grant")
    assert (check.ok, check.reason, check.kid) == (False, BAD_SIGNATURE, grant_key.kid)
    zeros = base64.b64encode(bytes(64)).decode()
    forged = f"v1,{grant_key.kid},{zeros}"
    assert trusted.verify(VALUE, forged, service="grant").reason == BAD_SIGNATURE


def test_a_key_of_another_service_does_not_count(keys_dir: Path, trusted: TrustedKeys) -> None:
    # Enforcement's key is trusted, but only for enforcement's records.
    enforcement = current_signing_key(keys_dir, "enforcement")
    check = trusted.verify(VALUE, enforcement.header_value(VALUE), service="grant")
    assert (check.ok, check.reason) == (False, OTHER_SERVICE)
    assert "enforcement" in check.detail


def test_an_unknown_key_is_named(trusted: TrustedKeys, tmp_path: Path) -> None:
    stranger = current_signing_key(tmp_path / "elsewhere", "grant")
    check = trusted.verify(VALUE, stranger.header_value(VALUE), service="grant")
    assert (check.ok, check.reason, check.kid) == (False, UNKNOWN_KID, stranger.kid)


@pytest.mark.parametrize(
    "header",
    [
        b"",
        b"v1",
        b"v1,,",
        b"v2,0123456789abcdef," + base64.b64encode(bytes(64)),
        b"v1,0123456789ABCDEF," + base64.b64encode(bytes(64)),
        b"v1,0123456789abcde," + base64.b64encode(bytes(64)),
        b"v1,0123456789abcdef," + base64.b64encode(bytes(63)),
        b"v1,0123456789abcdef," + base64.b64encode(bytes(65)),
        b"v1,0123456789abcdef," + base64.b64encode(bytes(64))[:-2],
        b"v1,0123456789abcdef," + base64.b64encode(bytes(64)).replace(b"A", b"-", 1),
        b"v1,0123456789abcdef," + base64.b64encode(bytes(64)) + b",extra",
        b"v1,0123456789abcdef, " + base64.b64encode(bytes(64)),
        b"v1,0123456789abcdef," + base64.b64encode(bytes(64))[:-3] + b"B==",  # spare bits
        b"v1,0123456789abcdef,\xff" + base64.b64encode(bytes(64))[1:],
        b"v1," + b"a" * 10_000,
    ],
)
def test_malformed_headers_are_refused_before_any_key_lookup(
    trusted: TrustedKeys, header: bytes
) -> None:
    check = trusted.verify(VALUE, header, service="grant")
    assert (check.ok, check.reason) == (False, MALFORMED_HEADER)
    assert trusted.verify(VALUE, header.decode("latin-1"), service="grant").reason == (
        MALFORMED_HEADER
    )


def test_two_signature_headers_are_malformed(trusted: TrustedKeys, grant_key: SigningKey) -> None:
    header = grant_key.header(VALUE)
    assert trusted.verify_headers(VALUE, [header, header], service="grant").reason == (
        MALFORMED_HEADER
    )


def test_the_trusted_keys_file_round_trips(
    tmp_path: Path, trusted: TrustedKeys, grant_key: SigningKey
) -> None:
    path = tmp_path / "var" / "keys" / "trusted.json"
    save_trusted_keys(path, trusted)
    document = json.loads(path.read_bytes())
    assert sorted(document) == ["keys"]
    assert {
        "kid": grant_key.kid,
        "service": "grant",
        "public_key": base64.b64encode(grant_key.public_key).decode(),
    } in document["keys"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    again = load_trusted_keys(path)
    assert again.keys == trusted.keys
    assert again.of_service("grant") == (grant_key.trusted_key(),)
    assert again.verify(VALUE, grant_key.header_value(VALUE), service="grant").ok


def test_a_trusted_keys_file_with_extra_fields_is_read(grant_key: SigningKey) -> None:
    entry = {**grant_key.trusted_key().to_json(), "added": "2026-06-28"}
    parsed = TrustedKeys.parse(json.dumps({"keys": [entry], "comment": "x"}).encode())
    assert parsed.keys == (grant_key.trusted_key(),)


def _entry(key: SigningKey, **changes: object) -> bytes:
    return json.dumps({"keys": [{**key.trusted_key().to_json(), **changes}]}).encode()


@pytest.mark.parametrize(
    ("document", "says"),
    [
        (lambda k: b"not json", "not JSON"),
        (lambda k: b"[]", 'no "keys" list'),
        (lambda k: b'{"keys": {}}', 'no "keys" list'),
        (lambda k: b'{"keys": [1]}', r"keys\[0\] is not an object"),
        (lambda k: _entry(k, kid="00" * 8), "does not match its public key"),
        (lambda k: _entry(k, kid=k.kid.upper()), "kid is not 16 lowercase hex"),
        (lambda k: _entry(k, service="Grant Service"), "service is not a service name"),
        (lambda k: _entry(k, public_key="AAAA"), "is not 32 bytes"),
        (lambda k: _entry(k, public_key="not base64!"), "is not base64"),
        (lambda k: _entry(k, public_key="A" * 1000), "is not a base64 string"),
        (lambda k: b" " * (1 << 20) + b"{}", "exceeds"),
    ],
)
def test_a_bad_trusted_keys_document_says_what_is_wrong(
    grant_key: SigningKey, document: Callable[[SigningKey], bytes], says: str
) -> None:
    with pytest.raises(KeyFileError, match=says):
        TrustedKeys.parse(document(grant_key))


def test_one_kid_cannot_speak_for_two_services(grant_key: SigningKey) -> None:
    twin = TrustedKey(grant_key.kid, "enforcement", grant_key.public_key)
    with pytest.raises(KeyFileError, match="listed for grant and enforcement"):
        TrustedKeys([grant_key.trusted_key(), twin])


def test_two_processes_making_the_first_key_agree_on_one(
    keys_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = current_signing_key(keys_dir, "grant")
    real = keyfiles.load_signing_keys
    calls = 0

    def racing(directory: Path, service: str) -> list[SigningKey]:
        # The second process looked before the first one's file appeared.
        nonlocal calls
        calls += 1
        return [] if calls == 1 else real(directory, service)

    monkeypatch.setattr(keyfiles, "load_signing_keys", racing)
    assert current_signing_key(keys_dir, "grant").public_key == first.public_key
    assert sorted(p.name for p in keys_dir.iterdir()) == ["grant-1.key"]


def test_rotating_rewrites_the_trusted_keys_file_with_old_and_new_keys(
    keys_dir: Path, grant_key: SigningKey
) -> None:
    path = keys_dir / "trusted.json"
    save_trusted_keys(path, TrustedKeys([grant_key.trusted_key()]))
    new_key = rotate_signing_key(keys_dir, "grant")
    save_trusted_keys(path, load_trusted_keys(path).with_keys(new_key.trusted_key()))
    assert {k.kid for k in load_trusted_keys(path).of_service("grant")} == {
        grant_key.kid,
        new_key.kid,
    }
    assert TrustedKey.of("grant", new_key.public_key) == new_key.trusted_key()
    assert sorted(p.name for p in keys_dir.iterdir()) == [
        "grant-1.key",
        "grant-2.key",
        "trusted.json",
    ]
    path.write_bytes(b"{}")
    with pytest.raises(KeyFileError, match=r'trusted\.json: .*no "keys" list'):
        load_trusted_keys(path)
