"""Server-sent events: breaches as enforcement lists them, and a version's propagation
until it completes. The console asks the services every ``live_poll_seconds`` with the
signed-in person's token, and sends what is new as HTML fragments the page inserts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from ..deps import ConsoleParts, Parts, RecordFilter, SignedIn
from ..sessions import Session

router = APIRouter()
KEEPALIVE_SECONDS = 15.0
"""A quiet stream sends a comment this often, so that nothing between the browser and
the console takes it for dead."""


def event(html: str, *, name: str = "message", event_id: int | None = None) -> str:
    """One server-sent event carrying ``html`` (each of its lines a ``data:`` line)."""
    lines = [f"event: {name}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines += [f"data: {line}" for line in html.splitlines() or [""]]
    return "\n".join(lines) + "\n\n"


def _stream(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _watching(request: Request, parts: ConsoleParts, session: Session) -> bool:
    """Whether to keep streaming: the page is still open and its session still signed in."""
    if await request.is_disconnected():
        return False
    return parts.sessions.find(session.session_id) is not None


async def _breaches(
    request: Request, parts: ConsoleParts, session: Session, params: dict[str, Any], seen: int
) -> AsyncIterator[str]:
    fragment = parts.templates.get_template("breach_row.html")
    yield "retry: 2000\n\n"
    quiet_since = asyncio.get_running_loop().time()
    while await _watching(request, parts, session):
        answer = await parts.services.call(
            "enforcement", "GET", "/v1/breaches", session.token, params={**params, "limit": 100}
        )
        if answer.ok:
            total = int(answer.body["total"])
            # Newest first: those beyond what the page has seen are at the top.
            fresh = answer.body["items"][: max(0, total - seen)]
            for breach in reversed(fresh):
                yield event(fragment.render(breach=breach), name="breach", event_id=total)
                quiet_since = asyncio.get_running_loop().time()
            seen = max(seen, total)
        if asyncio.get_running_loop().time() - quiet_since > KEEPALIVE_SECONDS:
            yield ": still here\n\n"
            quiet_since = asyncio.get_running_loop().time()
        await asyncio.sleep(parts.settings.live_poll_seconds)


@router.get("/breaches/stream")
async def breach_stream(
    request: Request,
    session: SignedIn,
    parts: Parts,
    filters: RecordFilter,
    seen: Annotated[int, Query(ge=0)] = 0,
    last_event_id: Annotated[int | None, Header()] = None,
) -> StreamingResponse:
    """New breaches as they are listed; ``seen`` is how many the page already shows (a
    reconnecting browser's ``Last-Event-ID`` wins: it saw that many)."""
    start = last_event_id if last_event_id is not None else seen
    return _stream(_breaches(request, parts, session, filters.params(), start))


async def _propagation(
    request: Request, parts: ConsoleParts, session: Session, grant_ids: list[str], template: str
) -> AsyncIterator[str]:
    """Each grant's newest version's propagation, sent while any is incomplete; then an
    ``end`` event, after which the page stops listening."""
    fragment = parts.templates.get_template(template)
    yield "retry: 2000\n\n"
    last = ""
    while await _watching(request, parts, session):
        answers = await asyncio.gather(
            *(
                parts.services.call(
                    "grant", "GET", f"/v1/grants/{quote(g)}/propagation", session.token
                )
                for g in grant_ids
            )
        )
        latest = [
            max(a.body["versions"], key=lambda v: int(v["version"])) if a.ok else {}
            for a in answers
        ]
        html = fragment.render(rows=list(zip(grant_ids, latest, strict=True)))
        if html != last:
            yield event(html, name="propagation")
            last = html
        if all(p.get("complete") for p in latest):
            yield event("", name="end")
            return
        await asyncio.sleep(parts.settings.live_poll_seconds)


@router.get("/grants/{grant_id}/propagation/stream")
async def grant_propagation_stream(
    grant_id: str, request: Request, session: SignedIn, parts: Parts
) -> StreamingResponse:
    return _stream(_propagation(request, parts, session, [grant_id], "propagation_rows.html"))


@router.get("/carveouts/{carveout_id}/propagation/stream")
async def carveout_propagation_stream(
    carveout_id: str, request: Request, session: SignedIn, parts: Parts
) -> StreamingResponse:
    page = await parts.services.read(
        "grant", "/v1/grants", session.token, {"carveout_id": carveout_id, "limit": 500}
    )
    grant_ids = [g["grant_id"] for g in page["items"]]
    return _stream(_propagation(request, parts, session, grant_ids, "propagation_rows.html"))
