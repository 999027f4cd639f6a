"""A regulator's actions: issue, amend, suspend, reinstate, revoke a grant, revoke a
carveout. Each is a form, then a confirmation page that repeats what will be done, then
the action, waiting for enforcement to apply it; the answer's page shows propagation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from ..backend import Answer
from ..deps import CheckedForm, Parts, Regulator, Render
from ..forms import (
    AMEND_FIELDS,
    ISSUE_FIELDS,
    Filled,
    amend_body,
    amend_form_of,
    blank_issue_form,
    filled,
    issue_body,
    place_api_errors,
)
from ..sessions import Session

router = APIRouter()
CONFIRMED = "confirmed"


@dataclass(frozen=True)
class Verb:
    """A regulator's action that takes only a reason."""

    button: str
    done: str
    explains: str


VERBS: dict[str, Verb] = {
    "suspend": Verb("Suspend", "suspended", "Accesses are denied until it is reinstated."),
    "reinstate": Verb("Reinstate", "reinstated", "Accesses are judged by its terms again."),
    "revoke": Verb("Revoke", "revoked", "For good: a revoked grant cannot be reinstated."),
}
Kind = Literal["issue", "amend", "grant", "carveout"]


def _waiting(parts: Parts, body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "wait": "applied", "wait_seconds": parts.settings.action_wait_seconds}


def _confirm(
    render: Render, form: Filled, *, title: str, button: str, action: str, cancel: str
) -> Response:
    return render.render(
        "confirm.html",
        title=title,
        values=form.values,
        button=button,
        action=action,
        cancel=cancel,
    )


async def _act(parts: Parts, session: Session, path: str, body: dict[str, Any]) -> Answer:
    return await parts.services.call("grant", "POST", path, session.token, json=body)


def _refused(form: Filled, answer: Answer) -> None:
    if answer.status == 422:
        place_api_errors(form, answer.field_errors())
    else:
        form.add("request", answer.message)


# Issue


@router.get("/grants/new")
async def issue_form(_: Regulator, render: Render) -> Response:
    return render.render("issue.html", form=blank_issue_form(datetime.now(UTC)))


@router.post("/grants/new")
async def issue(session: Regulator, posted: CheckedForm, parts: Parts, render: Render) -> Response:
    form = filled(posted, ISSUE_FIELDS)
    body = issue_body(form)
    if body is None:
        return render.render("issue.html", 422, form=form)
    if posted.get(CONFIRMED) != "yes":
        what = body.get("carveout_id", "?"), body.get("grantee", {}).get("id", "?")
        return _confirm(
            render,
            form,
            title=f"Issue a grant under {what[0]} to {what[1]}?",
            button="Issue grant",
            action="/grants/new",
            cancel="/grants",
        )
    answer = await _act(parts, session, "/v1/grants", _waiting(parts, body))
    if not answer.ok:
        _refused(form, answer)
        return render.render("issue.html", answer.status, form=form)
    grant_id = quote(answer.body["grant_id"])
    return RedirectResponse(f"/grants/{grant_id}/propagation?version=1&done=issued", 303)


# Amend


async def _grant(parts: Parts, session: Session, grant_id: str) -> dict[str, Any]:
    found: dict[str, Any] = await parts.services.read(
        "grant", f"/v1/grants/{quote(grant_id)}", session.token
    )
    return found


@router.get("/grants/{grant_id}/amend")
async def amend_form(grant_id: str, session: Regulator, parts: Parts, render: Render) -> Response:
    grant = await _grant(parts, session, grant_id)
    return render.render("amend.html", grant=grant, form=amend_form_of(grant))


@router.post("/grants/{grant_id}/amend")
async def amend(
    grant_id: str, session: Regulator, posted: CheckedForm, parts: Parts, render: Render
) -> Response:
    grant = await _grant(parts, session, grant_id)
    form = filled(posted, AMEND_FIELDS)
    body = amend_body(form)
    if body is None:
        return render.render("amend.html", 422, grant=grant, form=form)
    if posted.get(CONFIRMED) != "yes":
        return _confirm(
            render,
            form,
            title=f"Amend grant {grant_id}?",
            button="Amend grant",
            action=f"/grants/{quote(grant_id)}/amend",
            cancel=f"/grants/{quote(grant_id)}",
        )
    answer = await _act(
        parts, session, f"/v1/grants/{quote(grant_id)}/amend", _waiting(parts, body)
    )
    if not answer.ok:
        _refused(form, answer)
        return render.render("amend.html", answer.status, grant=grant, form=form)
    version = int(answer.body["version"])
    return RedirectResponse(
        f"/grants/{quote(grant_id)}/propagation?version={version}&done=amended", 303
    )


# Suspend, reinstate, revoke one grant; revoke a carveout


def _reason_page(
    render: Render, kind: Kind, target: str, verb: str, form: Filled, status: int = 200
) -> Response:
    return render.render(
        "reason.html",
        status,
        kind=kind,
        target=target,
        verb=VERBS[verb],
        action=f"/{'carveouts' if kind == 'carveout' else 'grants'}/{quote(target)}/{verb}",
        form=form,
    )


async def _reasoned(
    kind: Kind, target: str, verb: str, session: Session, posted: FormData, parts: Parts,
    render: Render,
) -> Response:  # fmt: skip
    form = filled(posted, ("reason",))
    if not form.values["reason"].strip():
        form.add("reason", "Say why: the reason is recorded with the action.")
        return _reason_page(render, kind, target, verb, form, 422)
    what = "carveout" if kind == "carveout" else "grant"
    base = f"/{what}s/{quote(target)}"
    if posted.get(CONFIRMED) != "yes":
        return _confirm(
            render,
            form,
            title=f"{VERBS[verb].button} {what} {target}?",
            button=f"{VERBS[verb].button} {what}",
            action=f"{base}/{verb}",
            cancel=base,
        )
    answer = await _act(parts, session, f"/v1{base}/{verb}", _waiting(parts, form.values))
    if not answer.ok:
        _refused(form, answer)
        return _reason_page(render, kind, target, verb, form, answer.status)
    done = VERBS[verb].done
    if kind == "carveout":
        return RedirectResponse(f"{base}?done={done}", 303)
    return RedirectResponse(
        f"{base}/propagation?version={int(answer.body['version'])}&done={done}", 303
    )


@router.get("/carveouts/{carveout_id}/revoke")
async def carveout_revoke_form(carveout_id: str, _: Regulator, render: Render) -> Response:
    return _reason_page(render, "carveout", carveout_id, "revoke", filled({}, ("reason",)))


@router.post("/carveouts/{carveout_id}/revoke")
async def revoke_carveout(
    carveout_id: str, session: Regulator, posted: CheckedForm, parts: Parts, render: Render
) -> Response:
    return await _reasoned("carveout", carveout_id, "revoke", session, posted, parts, render)


def _grant_routes(verb: str) -> None:
    """``GET`` and ``POST /grants/{grant_id}/<verb>``: the reason form, and the action."""

    async def form(grant_id: str, _: Regulator, render: Render) -> Response:
        return _reason_page(render, "grant", grant_id, verb, filled({}, ("reason",)))

    async def act(
        grant_id: str, session: Regulator, posted: CheckedForm, parts: Parts, render: Render
    ) -> Response:
        return await _reasoned("grant", grant_id, verb, session, posted, parts, render)

    router.add_api_route(f"/grants/{{grant_id}}/{verb}", form, methods=["GET"])
    router.add_api_route(f"/grants/{{grant_id}}/{verb}", act, methods=["POST"])


for _verb in VERBS:
    _grant_routes(_verb)
