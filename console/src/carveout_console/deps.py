"""What a page needs, as typed dependencies: the console's parts, the signed-in session,
a form whose CSRF token checked out, and a regulator allowed to act."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData
from starlette.responses import Response

from .backend import Services
from .deadletters_kafka import DeadLetterDesk
from .proofs import ProofChecker
from .sessions import CSRF_FIELD, SESSION_COOKIE, Session, SessionBook
from .settings import ConsoleSettings

TEMPLATES = Path(__file__).parent / "templates"


@dataclass
class ConsoleParts:
    settings: ConsoleSettings
    services: Services
    sessions: SessionBook
    templates: Jinja2Templates
    proofs: ProofChecker
    dead_letters: DeadLetterDesk


class NotSignedIn(Exception):
    """The page needs a signed-in person: they are sent to the sign-in page."""


class Refused(Exception):
    """The request may not be done (403): a form without its CSRF token, an auditor acting."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def console_parts(request: Request) -> ConsoleParts:
    parts: ConsoleParts = request.app.state.console
    return parts


Parts = Annotated[ConsoleParts, Depends(console_parts)]


def signed_in(request: Request, parts: Parts) -> Session:
    session = parts.sessions.find(request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise NotSignedIn()
    return session


SignedIn = Annotated[Session, Depends(signed_in)]


def regulator(session: SignedIn) -> Session:
    if not session.may_act:
        raise Refused("Only a regulator may do this: an auditor's console is read-only.")
    return session


Regulator = Annotated[Session, Depends(regulator)]


async def checked_form(request: Request, session: SignedIn) -> FormData:
    """The posted form, once its CSRF token is this session's (403 otherwise)."""
    form = await request.form()
    token = form.get(CSRF_FIELD)
    if not session.csrf_matches(token if isinstance(token, str) else None):
        raise Refused("This form has no valid CSRF token: reload the page and try again.")
    return form


CheckedForm = Annotated[FormData, Depends(checked_form)]


@dataclass(frozen=True)
class Pages:
    """Renders the console's pages with what every page shows (who is signed in, the
    CSRF token its forms carry)."""

    request: Request
    parts: ConsoleParts

    def render(self, template: str, status: int = 200, **context: Any) -> Response:
        session = self.parts.sessions.find(self.request.cookies.get(SESSION_COOKIE))
        return self.parts.templates.TemplateResponse(
            self.request,
            template,
            {
                "session": session,
                "may_act": bool(session and session.may_act),
                "csrf_token": session.csrf_token if session else context.pop("csrf", ""),
                **context,
            },
            status_code=status,
        )


def pages(request: Request, parts: Parts) -> Pages:
    return Pages(request, parts)


Render = Annotated[Pages, Depends(pages)]

Filter = Annotated[str, Query(max_length=200)]
"""A listing's filter, read from the query (blank: not filtered)."""


@dataclass(frozen=True)
class RecordFilters:
    """The grant and grantee a page of enforcement's records (breaches, decisions) is
    narrowed to, from the query."""

    grant_id: Filter = ""
    grantee_id: Filter = ""

    def params(self) -> dict[str, str]:
        """As query parameters: the enforcement API's, and the page's filter form."""
        return {"grant_id": self.grant_id, "grantee_id": self.grantee_id}


RecordFilter = Annotated[RecordFilters, Depends()]
