"""Bearer tokens and the roles they carry (the HTTP interface contract of every service)."""

from __future__ import annotations

import hmac
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


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


@dataclass(frozen=True)
class TokenBook:
    """Which bearer token carries which role."""

    tokens: dict[Role, str]

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
        missing = [role.value for role in Role if not raw.get(role.value)]
        if missing:
            raise MissingTokens(f"token file {path} has no token for: {', '.join(missing)}")
        return cls({role: str(raw[role.value]) for role in Role})

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

    def as_json(self) -> dict[str, str]:
        return {role.value: token for role, token in self.tokens.items()}

    def role_of(self, token: str) -> Role | None:
        for role, expected in self.tokens.items():
            if hmac.compare_digest(token.encode(), expected.encode()):
                return role
        return None

    def authorize(self, authorization: str | None, allowed: Iterable[Role]) -> Role:
        """Check an ``Authorization`` header; raise :class:`AuthError` with 401 or 403."""
        if not authorization:
            raise AuthError(401, "missing bearer token: send 'Authorization: Bearer <token>'")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError(401, "malformed Authorization header: expected 'Bearer <token>'")
        role = self.role_of(token.strip())
        if role is None:
            raise AuthError(401, "unknown bearer token")
        allowed_roles = set(allowed)
        if role not in allowed_roles:
            need = " or ".join(sorted(r.value for r in allowed_roles))
            raise AuthError(403, f"role '{role.value}' may not do this; it needs {need}")
        return role
