"""Who is signed in: sessions kept in this process, named by an unguessable cookie.

The bearer token stays on the server (the browser holds only the session id, in an
HttpOnly cookie no script can read), and each session has its own CSRF token that every
form carries back.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import StrEnum

SESSION_COOKIE = "carveout_session"
SIGNIN_COOKIE = "carveout_signin"
"""Before sign-in there is no session: the sign-in form's CSRF token is this cookie's
value, sent back in the form (a cross-site page can neither read nor set it)."""
CSRF_FIELD = "csrf_token"


class ConsoleRole(StrEnum):
    """The roles that may sign in: a regulator acts, an auditor reads."""

    REGULATOR = "regulator"
    AUDITOR = "auditor"


@dataclass
class Session:
    session_id: str
    token: str = field(repr=False)
    role: ConsoleRole
    csrf_token: str = field(repr=False)
    expires_at: float

    @property
    def may_act(self) -> bool:
        return self.role is ConsoleRole.REGULATOR

    def csrf_matches(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given, self.csrf_token)


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def same_secret(given: str | None, expected: str | None) -> bool:
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


class SessionBook:
    """Sessions by id, at most ``limit`` of them (the oldest go first), each ending at its
    expiry. A restart of the console signs everyone out: nothing is written anywhere."""

    def __init__(self, lifetime_seconds: float, limit: int) -> None:
        self.lifetime_seconds = lifetime_seconds
        self.limit = limit
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def open(self, token: str, role: ConsoleRole) -> Session:
        session = Session(
            session_id=new_secret(),
            token=token,
            role=role,
            csrf_token=new_secret(),
            expires_at=time.monotonic() + self.lifetime_seconds,
        )
        self._sessions[session.session_id] = session
        while len(self._sessions) > self.limit:
            self._sessions.popitem(last=False)
        return session

    def find(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if session.expires_at <= time.monotonic():
            del self._sessions[session_id]
            return None
        return session

    def close(self, session_id: str | None) -> None:
        if session_id:
            self._sessions.pop(session_id, None)
