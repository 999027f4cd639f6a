"""Signing in with a token, and out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from ..backend import SignInRefused
from ..deps import CheckedForm, Parts, Render, SignedIn
from ..sessions import CSRF_FIELD, SESSION_COOKIE, SIGNIN_COOKIE, new_secret, same_secret

router = APIRouter()


def _local(path: str | None) -> str:
    """Where to go after signing in: a path of this console only, never another site."""
    if path and path.startswith("/") and not path.startswith("//") and "\\" not in path:
        return path
    return "/grants"


def _set_cookie(response: Response, name: str, value: str, max_age: int | None = None) -> None:
    # HttpOnly: no script reads it. SameSite=Strict: no other site's page sends it. Not
    # Secure: the console serves plain HTTP on the loopback interface.
    response.set_cookie(
        name, value, max_age=max_age, httponly=True, samesite="strict", path="/", secure=False
    )


def _signin_page(
    render: Render, status: int = 200, error: str = "", next_path: str = ""
) -> Response:
    secret = new_secret()
    response = render.render(
        "signin.html", status, csrf=secret, error=error, next_path=_local(next_path)
    )
    _set_cookie(response, SIGNIN_COOKIE, secret)
    return response


@router.get("/signin")
async def signin_form(request: Request, render: Render, next: str = "") -> Response:
    if render.parts.sessions.find(request.cookies.get(SESSION_COOKIE)):
        return RedirectResponse(_local(next), status_code=303)
    return _signin_page(render, next_path=next)


@router.post("/signin")
async def sign_in(
    request: Request,
    parts: Parts,
    render: Render,
    token: Annotated[str, Form(max_length=1024)] = "",
    csrf_token: Annotated[str, Form(alias=CSRF_FIELD, max_length=256)] = "",
    next: Annotated[str, Form(max_length=2048)] = "",
) -> Response:
    if not same_secret(csrf_token, request.cookies.get(SIGNIN_COOKIE)):
        return _signin_page(
            render, 403, "This form has no valid CSRF token: sign in again from this page.", next
        )
    if not token.strip():
        return _signin_page(render, 401, "Enter your Carveout token.", next)
    try:
        role = await parts.services.role_of(token.strip())
    except SignInRefused as refused:
        return _signin_page(render, refused.status, str(refused), next)
    session = parts.sessions.open(token.strip(), role)
    response = RedirectResponse(_local(next), status_code=303)
    _set_cookie(response, SESSION_COOKIE, session.session_id)
    response.delete_cookie(SIGNIN_COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.post("/signout")
async def sign_out(session: SignedIn, _: CheckedForm, parts: Parts) -> Response:
    parts.sessions.close(session.session_id)
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response
