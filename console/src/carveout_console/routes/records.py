"""What enforcement recorded (breaches, decisions with their proofs checked) and what the
consumers set aside (dead letters, which a regulator may re-drive)."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from ..deadletters_kafka import DlqError
from ..deps import CheckedForm, Parts, RecordFilter, RecordFilters, Regulator, Render, SignedIn

router = APIRouter()


async def _listing(
    kind: str, session: SignedIn, parts: Parts, render: Render, by: RecordFilters
) -> Response:
    """Enforcement's newest ``kind`` (breaches or decisions), filtered by grant and grantee."""
    filters = by.params()
    page = await parts.services.read(
        "enforcement", f"/v1/{kind}", session.token, {**filters, "limit": 100}
    )
    return render.render(
        f"{kind}.html", **{kind: page["items"]}, total=page["total"], filters=filters
    )


@router.get("/breaches")
async def breaches(
    session: SignedIn, parts: Parts, render: Render, filters: RecordFilter
) -> Response:
    return await _listing("breaches", session, parts, render, filters)


@router.get("/decisions")
async def decisions(
    session: SignedIn, parts: Parts, render: Render, filters: RecordFilter
) -> Response:
    return await _listing("decisions", session, parts, render, filters)


@router.get("/decisions/{access_event_id}")
async def decision_proof(
    access_event_id: str, session: SignedIn, parts: Parts, render: Render
) -> Response:
    proof, keys = await asyncio.gather(
        parts.services.call(
            "enforcement", "GET", f"/v1/decisions/{quote(access_event_id)}/proof", session.token
        ),
        parts.services.read("enforcement", "/v1/keys", session.token),
    )
    if not proof.ok:
        # A decision is covered by a checkpoint within a second of being judged.
        return render.render(
            "proof.html", proof.status, access_event_id=access_event_id, error=proof.message
        )
    report = parts.proofs.check(proof.body, keys.get("keys") or [])
    return render.render("proof.html", access_event_id=access_event_id, report=report)


@router.get("/deadletters")
async def dead_letters(session: SignedIn, parts: Parts, render: Render) -> Response:
    try:
        found = await parts.dead_letters.entries()
    except DlqError as exc:
        return render.render("deadletters.html", 503, entries=[], error=str(exc))
    newest = list(reversed(found.entries))[:200]
    return render.render("deadletters.html", entries=newest, total=len(found.entries), error="")


@router.post("/deadletters/{entry_id}/redrive")
async def redrive(
    entry_id: str, session: Regulator, posted: CheckedForm, parts: Parts, render: Render
) -> Response:
    if posted.get("confirmed") != "yes":
        return render.render(
            "confirm.html",
            title=f"Re-drive dead letter {entry_id}?",
            values={},
            button="Re-drive",
            action=f"/deadletters/{quote(entry_id)}/redrive",
            cancel="/deadletters",
        )
    try:
        # The re-drive is recorded on the topic under the console's name and the role.
        await parts.dead_letters.redrive(entry_id, by=f"console ({session.role.value})")
    except DlqError as exc:
        return render.render("deadletters.html", 409, entries=[], total=0, error=str(exc))
    return RedirectResponse("/deadletters?redriven=1", 303)
