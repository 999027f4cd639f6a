"""``carveout grant issue|show|list|suspend|reinstate|revoke|amend``: the regulator's
command group (:data:`app`, that cli.py adds), over the grant service's API."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from carveout_runtime.auth import Role

from .client import ApiFailure, call
from .output import JsonFlag, console, fail, print_json

app = typer.Typer(help="Issue and inspect grants (regulator).", no_args_is_help=True)

Reason = Annotated[str, typer.Option("--reason", help="Why (recorded with the event).")]


def _read_json(file: Path) -> Any:
    """The JSON in ``file`` (``-`` reads stdin); an error, and exit 1, when it is not JSON."""
    text = sys.stdin.read() if str(file) == "-" else file.read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"{file} is not JSON: {exc}")


def _call(method: str, path: str, *, role: Role, **request: Any) -> Any:
    """The grant service's answer; an error, and exit 1, when it gives none."""
    try:
        return call("grant", method, path, role=role, **request)
    except ApiFailure as exc:
        fail(str(exc))


@app.command("issue")
def grant_issue(
    file: Annotated[
        Path,
        typer.Argument(
            help="JSON file with the grant (the body of POST /v1/grants); - reads stdin."
        ),
    ],
    as_json: JsonFlag = False,
) -> None:
    """Issue a grant from a JSON file."""
    body = _read_json(file)
    grant = _call("POST", "/v1/grants", role=Role.REGULATOR, body=body)
    if as_json:
        print_json(grant)
    else:
        console.print(
            f"issued [bold]{grant['grant_id']}[/] (version {grant['version']}, {grant['status']}) "
            f"to {grant['grantee']['id']} for {grant['model_id']}"
        )


@app.command("show")
def grant_show(grant_id: str, as_json: JsonFlag = False) -> None:
    """Show one grant as the grant service holds it."""
    grant = _call("GET", f"/v1/grants/{grant_id}", role=Role.AUDITOR)
    if as_json:
        print_json(grant)
    else:
        console.print_json(json.dumps(grant, default=str))


@app.command("list")
def grant_list(
    grantee_id: Annotated[str | None, typer.Option(help="Only this grantee's grants.")] = None,
    status: Annotated[
        str | None, typer.Option(help="active, suspended, revoked or expired.")
    ] = None,
    limit: int = 50,
    as_json: JsonFlag = False,
) -> None:
    """List grants."""
    params = {k: v for k, v in {"grantee_id": grantee_id, "status": status}.items() if v}
    page = _call("GET", "/v1/grants", role=Role.AUDITOR, params={**params, "limit": limit})
    if as_json:
        print_json(page)
        return
    table = Table(title=f"{page['total']} grant(s)")
    for column in ("grant", "carveout", "grantee", "model", "version", "status", "valid until"):
        table.add_column(column, overflow="fold")
    for g in page["items"]:
        table.add_row(
            g["grant_id"],
            g["carveout_id"],
            g["grantee"]["id"],
            g["model_id"],
            str(g["version"]),
            g["status"],
            g["valid_until"],
        )
    console.print(table)


def _action(path: str, body: dict[str, Any], as_json: bool) -> None:
    """A regulator action on one grant or a whole carveout, and what it changed."""
    answer = _call("POST", path, role=Role.REGULATOR, body=body)
    if as_json:
        print_json(answer)
        return
    for grant in answer.get("grants", [answer]):
        console.print(
            f"{grant['grant_id']}: version {grant['version']}, {grant['status']} "
            f"(event {grant['event_id']}, effective {grant['effective_at']})"
        )
    console.print(f"consistency token: {answer['consistency_token']}", highlight=False)


@app.command("suspend")
def grant_suspend(grant_id: str, reason: Reason, as_json: JsonFlag = False) -> None:
    """Suspend an active grant until reinstated."""
    _action(f"/v1/grants/{grant_id}/suspend", {"reason": reason}, as_json)


@app.command("reinstate")
def grant_reinstate(grant_id: str, reason: Reason, as_json: JsonFlag = False) -> None:
    """Reinstate a suspended grant."""
    _action(f"/v1/grants/{grant_id}/reinstate", {"reason": reason}, as_json)


@app.command("revoke")
def grant_revoke(
    grant_id: Annotated[str, typer.Argument(help="The grant, or the carveout with --carveout.")],
    reason: Reason,
    carveout: Annotated[
        bool, typer.Option("--carveout", help="Revoke the whole carveout ID names.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Revoke a grant (or, with --carveout, every grant of a carveout) for good."""
    path = f"/v1/carveouts/{grant_id}/revoke" if carveout else f"/v1/grants/{grant_id}/revoke"
    _action(path, {"reason": reason}, as_json)


@app.command("amend")
def grant_amend(
    grant_id: str,
    file: Annotated[
        Path,
        typer.Argument(
            help="JSON with the new valid_from, valid_until, conditions, "
            "breach_policy (a grant file works); - is stdin."
        ),
    ],
    reason: Reason,
    as_json: JsonFlag = False,
) -> None:
    """Replace a grant's validity, conditions and breach policy."""
    terms = _read_json(file)
    keep = ("valid_from", "valid_until", "conditions", "breach_policy")
    body = {k: v for k, v in terms.items() if k in keep}
    _action(f"/v1/grants/{grant_id}/amend", {**body, "reason": reason}, as_json)
