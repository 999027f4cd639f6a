"""Bearer tokens and the roles they carry (the HTTP interface contract of every service)."""

from __future__ import annotations

import hmac
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from carveout_contracts.limits import MAX_ID


class Role(StrEnum):
    REGULATOR = "regulator"
    GATEWAY = "gateway"
    AUDITOR = "auditor"


ANY_ROLE = frozenset(Role)


class AuthError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class MissingTokens(RuntimeError):
    """The service has no tokens configured and must not start."""


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a bearer token says the caller is: its role and, for a named token, its name.

    A named gateway token's name is its gateway id.
    """

    role: Role
    name: str | None = None


@dataclass(frozen=True)
class NamedToken:
    name: str
    role: Role
    token: str


def _named(raw: object, path: Path) -> tuple[NamedToken, ...]:
    """The ``named`` list of a token file, refused whole when any entry is unusable."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise MissingTokens(f"token file {path}: 'named' must be a list of {{name, role, token}}")
    named = []
    for i, entry in enumerate(raw):
        where = f"token file {path}: named[{i}]"
        if not isinstance(entry, dict):
            raise MissingTokens(f"{where} must be an object with name, role and token")
        name, role, token = entry.get("name"), entry.get("role"), entry.get("token")
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_ID:
            raise MissingTokens(f"{where}: 'name' must be 1 to {MAX_ID} characters")
        if role not in {r.value for r in Role}:
            raise MissingTokens(
                f"{where}: 'role' must be one of {', '.join(r.value for r in Role)}, not {role!r}"
            )
        if not isinstance(token, str) or not token.strip():
            raise MissingTokens(f"{where}: 'token' must be a non-empty string")
        named.append(NamedToken(name.strip(), Role(role), token.strip()))
    return tuple(named)


@dataclass(frozen=True)
class TokenBook:
    """Which bearer token carries which role: one token per role, and any named tokens."""

    tokens: dict[Role, str]
    named: tuple[NamedToken, ...] = ()
    _entries: tuple[tuple[bytes, Caller], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        entries = [(token.encode(), Caller(role)) for role, token in self.tokens.items()]
        entries += [(n.token.encode(), Caller(n.role, n.name)) for n in self.named]
        tokens = [token for token, _ in entries]
        if len(set(tokens)) != len(tokens):
            raise MissingTokens("two API tokens are the same: every token must be unique")
        names = [n.name for n in self.named]
        if len(set(names)) != len(names):
            raise MissingTokens("two named API tokens have the same name: names must be unique")
        object.__setattr__(self, "_entries", tuple(entries))

    @classmethod
    def generate(cls) -> TokenBook:
        return cls({role: f"co_{role.value[:3]}_{secrets.token_urlsafe(24)}" for role in Role})

    @classmethod
    def read(cls, path: Path) -> TokenBook:
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise MissingTokens(f"token file {path} does not exist") from None
        except json.JSONDecodeError as exc:
            raise MissingTokens(f"token file {path} is not JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise MissingTokens(f"token file {path} must hold a JSON object")
        missing = [role.value for role in Role if not raw.get(role.value)]
        if missing:
            raise MissingTokens(f"token file {path} has no token for: {', '.join(missing)}")
        return cls({role: str(raw[role.value]) for role in Role}, _named(raw.get("named"), path))

    @classmethod
    def load_or_create(cls, path: Path) -> tuple[TokenBook, bool]:
        """Read the token file, or write a new one; says whether it was created."""
        if path.exists():
            return cls.read(path), False
        book = cls.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(book.as_json(), indent=2) + "\n")
        tmp.replace(path)
        return book, True

    @classmethod
    def configured(
        cls,
        *,
        tokens_file: Path | None,
        regulator: str | None,
        gateway: str | None,
        auditor: str | None,
    ) -> TokenBook:
        """Tokens given one by one win; otherwise the token file; otherwise refuse."""
        given = {Role.REGULATOR: regulator, Role.GATEWAY: gateway, Role.AUDITOR: auditor}
        if all(given.values()):
            return cls({role: str(token) for role, token in given.items()})
        if tokens_file is not None:
            return cls.read(tokens_file)
        missing = [role.value for role, token in given.items() if not token]
        raise MissingTokens(
            "no API tokens configured: set CARVEOUT_TOKENS_FILE, or the tokens for "
            + ", ".join(missing)
            + " (CARVEOUT_REGULATOR_TOKEN, CARVEOUT_GATEWAY_TOKEN, CARVEOUT_AUDITOR_TOKEN)"
        )

    def as_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {role.value: token for role, token in self.tokens.items()}
        if self.named:
            doc["named"] = [
                {"name": n.name, "role": n.role.value, "token": n.token} for n in self.named
            ]
        return doc

    def identify(self, token: str) -> Caller | None:
        """The caller a token names, comparing it with every known token in constant time
        (no early exit, so the time taken says nothing about which token came close)."""
        given = token.encode()
        found = None
        for expected, caller in self._entries:
            if hmac.compare_digest(given, expected) and found is None:
                found = caller
        return found

    def role_of(self, token: str) -> Role | None:
        caller = self.identify(token)
        return caller.role if caller else None

    def authenticate(self, authorization: str | None, allowed: Iterable[Role]) -> Caller:
        """Check an ``Authorization`` header; raise :class:`AuthError` with 401 or 403."""
        if not authorization:
            raise AuthError(401, "missing bearer token: send 'Authorization: Bearer <token>'")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError(401, "malformed Authorization header: expected 'Bearer <token>'")
        caller = self.identify(token.strip())
        if caller is None:
            raise AuthError(401, "unknown bearer token")
        allowed_roles = allowed if isinstance(allowed, frozenset) else frozenset(allowed)
        if caller.role not in allowed_roles:
            need = " or ".join(sorted(r.value for r in allowed_roles))
            raise AuthError(403, f"role '{caller.role.value}' may not do this; it needs {need}")
        return caller

    def authorize(self, authorization: str | None, allowed: Iterable[Role]) -> Role:
        """Like :meth:`authenticate`, for callers that need only the role."""
        return self.authenticate(authorization, allowed).role


def bound_gateway_id(caller: Caller, gateway_id: str | None) -> str | None:
    """The gateway id an event from ``caller`` carries: a named gateway token's name.

    A named gateway token may only speak for itself (403 naming both ids otherwise); a
    role token (unnamed) speaks for any gateway, as the event says.
    """
    if caller.role is not Role.GATEWAY or caller.name is None:
        return gateway_id
    if gateway_id is not None and gateway_id != caller.name:
        raise AuthError(
            403,
            f"gateway_id {gateway_id!r} is not this token's gateway: "
            f"the token is named {caller.name!r}, so its events carry gateway_id {caller.name!r}",
        )
    return caller.name
