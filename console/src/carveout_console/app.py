"""The console's composition root: its parts, its pages, and how refusals look."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from .backend import ServiceError, Services
from .deadletters_kafka import DeadLetterDesk
from .deps import TEMPLATES, ConsoleParts, NotSignedIn, Pages, Refused
from .proofs import ProofChecker
from .routes import actions, grants, live, records, signin
from .sessions import SessionBook
from .settings import ConsoleSettings

STATIC = Path(__file__).parent / "static"
SECURITY_HEADERS = {
    # Every asset is the console's own: nothing is fetched from anywhere else, no
    # inline script runs, and no other site may frame a page or receive a form.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def create_app(
    settings: ConsoleSettings, transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    """The console; ``transport`` stands in for the services in tests."""
    services = Services(settings, transport)
    parts = ConsoleParts(
        settings=settings,
        services=services,
        sessions=SessionBook(settings.session_hours * 3600, settings.sessions_max),
        templates=Jinja2Templates(directory=TEMPLATES),
        proofs=ProofChecker(settings.trusted_keys),
        dead_letters=DeadLetterDesk(settings.kafka_bootstrap),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await services.aclose()

    app = FastAPI(
        title="Carveout console", docs_url=None, redoc_url=None, openapi_url=None,
        lifespan=lifespan,
    )  # fmt: skip
    app.state.console = parts
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    # Fixed paths (/grants/new, /grants/{id}/revoke) before the grant's own page.
    for module in (signin, actions, live, records, grants):
        app.include_router(module.router)
    _install_refusals(app, parts)

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        if not request.url.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    # Serving is all the console needs to be ready: each page asks the services itself.
    @app.get("/healthz", include_in_schema=False)
    @app.get("/readyz", include_in_schema=False)
    async def healthz() -> Response:
        return PlainTextResponse("ok")

    return app


def _install_refusals(app: FastAPI, parts: ConsoleParts) -> None:
    @app.exception_handler(NotSignedIn)
    async def not_signed_in(request: Request, _: NotSignedIn) -> Response:
        if request.method == "GET":
            return RedirectResponse(f"/signin?next={quote(request.url.path)}", status_code=303)
        return Pages(request, parts).render(
            "error.html", 403, message="Sign in first: this needs a signed-in session."
        )

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> Response:
        return Pages(request, parts).render("error.html", 403, message=exc.message)

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> Response:
        return Pages(request, parts).render("error.html", exc.status, message=str(exc))
