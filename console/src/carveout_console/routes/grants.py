"""Reading grants: all of them at a glance, one grant whole, a carveout, and how far a
version has propagated."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import RedirectResponse, Response

from ..deps import Filter, Parts, Render, SignedIn

router = APIRouter()
STATUSES = ("active", "suspended", "revoked", "expired")
DONE = {
    "issued": "Issued",
    "amended": "Amended",
    "suspended": "Suspended",
    "reinstated": "Reinstated",
    "revoked": "Revoked",
}
"""What a result page says was done (the word comes from this table, never the query)."""


@router.get("/")
async def home() -> Response:
    return RedirectResponse("/grants", status_code=303)


@router.get("/grants")
async def grants(
    session: SignedIn,
    parts: Parts,
    render: Render,
    carveout_id: Filter = "",
    grantee_id: Filter = "",
    status: Filter = "",
) -> Response:
    page = await parts.services.read(
        "grant",
        "/v1/grants",
        session.token,
        {
            "carveout_id": carveout_id,
            "grantee_id": grantee_id,
            "status": status if status in STATUSES else "",
            "limit": 500,
        },
    )
    by_carveout: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for grant in page["items"]:
        by_carveout[grant["carveout_id"]].append(grant)
    return render.render(
        "grants.html",
        by_carveout=dict(sorted(by_carveout.items())),
        total=page["total"],
        shown=len(page["items"]),
        filters={"carveout_id": carveout_id, "grantee_id": grantee_id, "status": status},
        statuses=STATUSES,
    )


def _event_ids(propagation: dict[str, Any], breaches: list[dict[str, Any]]) -> set[str]:
    ids = {str(v.get("event_id")) for v in propagation.get("versions", [])}
    return ids | {str(b.get("event_id")) for b in breaches}


@router.get("/grants/{grant_id}")
async def grant(grant_id: str, session: SignedIn, parts: Parts, render: Render) -> Response:
    services, token = parts.services, session.token
    found, propagation, breaches, notifications = await asyncio.gather(
        services.read("grant", f"/v1/grants/{grant_id}", token),
        services.read("grant", f"/v1/grants/{grant_id}/propagation", token),
        services.read("enforcement", "/v1/breaches", token, {"grant_id": grant_id, "limit": 100}),
        services.read("notification", "/v1/notifications", token, {"limit": 1000}),
    )
    about_grant = _event_ids(propagation, breaches["items"])
    return render.render(
        "grant.html",
        grant=found,
        versions=sorted(propagation["versions"], key=lambda v: -int(v["version"])),
        alive=propagation.get("alive", []),
        breaches=breaches["items"],
        breaches_total=breaches["total"],
        notifications=[n for n in notifications["items"] if n["event_id"] in about_grant],
    )


async def _latest_propagation(parts: Parts, token: str, grant_id: str) -> dict[str, Any]:
    answer = await parts.services.read(
        "grant", f"/v1/grants/{grant_id}/propagation", token, {"newest": 1}
    )
    versions = answer.get("versions") or [{}]
    latest: dict[str, Any] = max(versions, key=lambda v: int(v.get("version", 0)))
    return latest


@router.get("/carveouts/{carveout_id}")
async def carveout(
    carveout_id: str, session: SignedIn, parts: Parts, render: Render, done: Filter = ""
) -> Response:
    page = await parts.services.read(
        "grant", "/v1/grants", session.token, {"carveout_id": carveout_id, "limit": 500}
    )
    latest = await asyncio.gather(
        *(_latest_propagation(parts, session.token, g["grant_id"]) for g in page["items"])
    )
    return render.render(
        "carveout.html",
        carveout_id=carveout_id,
        grants=page["items"],
        rows=[(g["grant_id"], p) for g, p in zip(page["items"], latest, strict=True)],
        revocable=any(g["status"] != "revoked" for g in page["items"]),
        live=not all(p.get("complete") for p in latest),
        done=DONE.get(done, ""),
    )


@router.get("/grants/{grant_id}/propagation")
async def propagation(
    grant_id: str,
    session: SignedIn,
    parts: Parts,
    render: Render,
    version: Annotated[int, Query(ge=1)],
    done: Filter = "",
) -> Response:
    services, token = parts.services, session.token
    found, answer = await asyncio.gather(
        services.read("grant", f"/v1/grants/{grant_id}", token),
        services.read("grant", f"/v1/grants/{grant_id}/propagation", token),
    )
    [shown] = [v for v in answer["versions"] if v["version"] == version] or [None]
    return render.render(
        "propagation.html",
        grant=found,
        version=version,
        propagation=shown,
        done=DONE.get(done, ""),
    )
