"""``carveout keys``: the services' Ed25519 event-signing keys and the trusted-keys file.

``carveout up`` makes them on first start (:func:`prepare_keys`); ``carveout keys rotate``
gives a service a new key that signs from its next start, while the old one, still
trusted, verifies what it signed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from carveout_runtime.keyfiles import (
    current_signing_key,
    load_signing_keys,
    rotate_signing_key,
    save_trusted_keys,
)
from carveout_runtime.signing import KeyFileError, TrustedKeys

from .output import console, fail, json_option, print_json
from .system import var_dir

SIGNING_SERVICES: tuple[str, ...] = ("grant", "enforcement", "notification")
"""The services that publish signed events."""

app = typer.Typer(
    help="Event-signing keys (Ed25519) and the trusted-keys file.", no_args_is_help=True
)

JsonFlag = Annotated[bool, json_option("Print the trusted keys as JSON.")]


def keys_dir() -> Path:
    return Path(os.environ.get("CARVEOUT_KEYS_DIR", str(var_dir() / "keys")))


def trusted_keys_file() -> Path:
    return Path(os.environ.get("CARVEOUT_TRUSTED_KEYS", str(keys_dir() / "trusted-keys.json")))


def prepare_keys() -> TrustedKeys:
    """Each signing service's key (made when it has none, private files 0600 in a 0700
    folder) and the trusted-keys file naming every key of every service, old ones included."""
    directory = keys_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    for service in SIGNING_SERVICES:
        current_signing_key(directory, service)
    trusted = TrustedKeys(
        key.trusted_key()
        for service in SIGNING_SERVICES
        for key in load_signing_keys(directory, service)
    )
    save_trusted_keys(trusted_keys_file(), trusted)
    return trusted


def _show(trusted: TrustedKeys, as_json: bool) -> None:
    if as_json:
        print_json({"keys": [key.to_json() for key in trusted.keys]})
        return
    for key in trusted.keys:
        console.print(f"{key.service:<13} {key.kid}", highlight=False)
    console.print(f"trusted keys: {trusted_keys_file()}", highlight=False)


@app.command("init")
def init(as_json: JsonFlag = False) -> None:
    """Make the keys that are missing and write the trusted-keys file (what `carveout up` does)."""
    try:
        _show(prepare_keys(), as_json)
    except (KeyFileError, OSError) as error:
        fail(str(error))


@app.command("rotate")
def rotate(
    service: Annotated[str, typer.Argument(help="grant, enforcement or notification.")],
    as_json: JsonFlag = False,
) -> None:
    """Give SERVICE a new key, trusted at once, that signs from the service's next start."""
    if service not in SIGNING_SERVICES:
        fail(f"{service!r} signs no events: choose one of {', '.join(SIGNING_SERVICES)}")
    try:
        rotate_signing_key(keys_dir(), service)
        _show(prepare_keys(), as_json)
    except (KeyFileError, OSError) as error:
        fail(str(error))
