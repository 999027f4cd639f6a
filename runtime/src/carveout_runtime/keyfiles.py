"""Signing keys and trusted keys on disk.

Private keys live one per file, ``<dir>/<service>-<n>.key`` (PKCS#8 PEM, mode 0600) in
a 0700 directory such as ``var/keys``. Rotation adds ``<service>-<n+1>.key``, which signs
from then on; the older files stay, and their public halves stay in the trusted-keys
file (``CARVEOUT_TRUSTED_KEYS``, mode 0644) so what they signed still verifies.

Files are written so that a reader never sees half of one: synced under a temporary
name, then linked (a new key, never overwriting one) or renamed (the trusted keys) into
place. Several processes starting at once therefore agree on one first key.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .signing import MAX_TRUSTED_KEYS_BYTES, KeyFileError, SigningKey, TrustedKeys, check_service

MAX_KEY_FILE_BYTES = 4096
_KEY_FILE_RE = re.compile(r"([a-z][a-z0-9_-]{0,31})-([1-9][0-9]{0,8})\.key")


def key_path(directory: Path, service: str, number: int) -> Path:
    """Where a service's ``number``-th private key is kept."""
    return directory / f"{check_service(service)}-{number}.key"


def load_signing_keys(directory: Path, service: str) -> list[SigningKey]:
    """A service's private keys under ``directory``, oldest first (empty if none)."""
    check_service(service)
    if not directory.is_dir():
        return []
    numbered = []
    for path in directory.iterdir():
        match = _KEY_FILE_RE.fullmatch(path.name)
        if match and match[1] == service:
            numbered.append((int(match[2]), path))
    return [_read_key(path, service, number) for number, path in sorted(numbered)]


def current_signing_key(directory: Path, service: str) -> SigningKey:
    """The key a service signs with: its newest, made (as ``<service>-1``) if it has none.

    Safe when several processes start at once: the first file written wins and the
    others load it.
    """
    keys = load_signing_keys(directory, service)
    if keys:
        return keys[-1]
    key = SigningKey(service, 1, Ed25519PrivateKey.generate())
    if _write_new_key(directory, key):
        return key
    return load_signing_keys(directory, service)[-1]


def rotate_signing_key(directory: Path, service: str) -> SigningKey:
    """Make a service's next key (``<service>-<n+1>``), which signs from then on.

    The old keys stay on disk; their public halves must stay trusted for what they signed.
    """
    for _ in range(100):
        keys = load_signing_keys(directory, service)
        number = keys[-1].number + 1 if keys else 1
        key = SigningKey(service, number, Ed25519PrivateKey.generate())
        if _write_new_key(directory, key):
            return key
    raise KeyFileError(f"could not claim a new key number for {service} under {directory}")


def load_trusted_keys(path: Path) -> TrustedKeys:
    """Read a trusted-keys file; ``KeyFileError`` names the file and what is wrong."""
    with path.open("rb") as file:
        data = file.read(MAX_TRUSTED_KEYS_BYTES + 1)
    try:
        return TrustedKeys.parse(data)
    except KeyFileError as error:
        raise KeyFileError(f"{path}: {error}") from error


def save_trusted_keys(path: Path, keys: TrustedKeys) -> None:
    """Write a trusted-keys file atomically (readers see the old or the new file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Public keys: every consumer reads them.
    _write_atomically(path, keys.dumps(), 0o644, replace=True)


def _write_new_key(directory: Path, key: SigningKey) -> bool:
    """Write ``key`` to its file unless that file exists; False when it already did."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    pem = key.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = key_path(directory, key.service, key.number)
    return _write_atomically(path, pem, 0o600, replace=False)


def _write_atomically(path: Path, data: bytes, mode: int, *, replace: bool) -> bool:
    """Write ``data`` to ``path`` so that readers see the whole file or none of it.

    The bytes are written and synced under a temporary name beside ``path``, then
    renamed over it (``replace``) or hard-linked to it: a link fails if the file
    exists, so a new key never overwrites one another process has just made (False).
    """
    # mkstemp creates the file 0600, so a private key is never readable by others.
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, mode)
        if replace:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # so the new name itself survives a crash
    finally:
        os.close(directory)
    return True


def _read_key(path: Path, service: str, number: int) -> SigningKey:
    mode = path.stat().st_mode
    if mode & 0o077:
        raise KeyFileError(f"{path} is readable by others (mode {mode & 0o777:o}); chmod 600 it")
    with path.open("rb") as file:
        data = file.read(MAX_KEY_FILE_BYTES + 1)
    if len(data) > MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"{path} is larger than a key file can be")
    try:
        private_key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as error:
        raise KeyFileError(f"{path} is not an unencrypted PEM private key: {error}") from error
    if not isinstance(private_key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} is not an Ed25519 key")
    return SigningKey(service, number, private_key)
