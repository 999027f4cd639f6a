"""``carveout audit``: check from outside, without trusting the services' stores, that the
transparency logs (DESIGN §12) are what their signed checkpoints say, and gather or check
one grant's evidence file.

- ``carveout audit verify``: the keys the services serve against the trusted-keys file,
  every checkpoint's signature, and that each log grew from the checkpoint this auditor
  verified last (kept in a witness file); ``--from-log`` also rebuilds every log, leaf by
  leaf, from the topics and the stored decisions (:mod:`.audit_rebuild`).
- ``carveout audit verify FILE``: an evidence file, offline (:mod:`.evidence`).
- ``carveout audit export --grant ID``: write one grant's evidence file.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from aiokafka.errors import KafkaError
from rich.table import Table

from carveout_runtime.keyfiles import load_trusted_keys
from carveout_runtime.signing import KeyFileError, TrustedKeys

from .audit_checks import (
    LOG_SERVICES,
    AuditError,
    Findings,
    Services,
    auditor_token,
    check_checkpoints,
    check_growth,
    check_served_keys,
    load_witness,
    owner_of,
    save_witness,
    witness_path,
)
from .audit_rebuild import (
    accesses_by_partition,
    check_decision_log,
    check_grant_history,
    signed_grant_events,
)
from .evidence import Evidence, propagation, read_evidence, verify_evidence, write_evidence
from .evidence_export import gather
from .keys import trusted_keys_file
from .output import console, err, fail, json_option, print_json, reading_progress
from .system import kafka_bootstrap, var_dir

app = typer.Typer(
    help="Check the transparency logs and one grant's evidence, trusting no store.",
    no_args_is_help=True,
)

JsonFlag = Annotated[bool, json_option("Print the checks as one JSON object.")]
TrustedKeysOption = Annotated[
    Path | None,
    typer.Option(
        "--trusted-keys",
        help="The trusted-keys file the services' keys must be in "
        "(default: CARVEOUT_TRUSTED_KEYS, else var/keys/trusted-keys.json).",
    ),
]
BootstrapOption = Annotated[
    str | None,
    typer.Option("--bootstrap", help="Kafka bootstrap servers (CARVEOUT_KAFKA_BOOTSTRAP)."),
]
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


def _trusted(path: Path | None, *, required: bool) -> TrustedKeys | None:
    chosen = path or trusted_keys_file()
    if not chosen.is_file():
        if required or path is not None:
            fail(
                f"no trusted-keys file at {chosen}: the keys a verification holds the services "
                "to (`carveout keys init` writes it; or pass --trusted-keys)"
            )
        return None
    try:
        return load_trusted_keys(chosen)
    except (KeyFileError, OSError) as exc:
        fail(f"the trusted-keys file cannot be used: {exc}")


@contextmanager
def _failing_plainly(bootstrap: str, cannot_write: str) -> Iterator[None]:
    """Exit with a plain error on what a command talking to the system may meet: a check
    that cannot be made, the log out of reach at ``bootstrap``, or a file it cannot write
    (``cannot_write`` says which)."""
    try:
        yield
    except AuditError as exc:
        fail(str(exc))
    except KafkaError as exc:
        fail(f"cannot read the log at {bootstrap}: {exc}")
    except OSError as exc:
        fail(f"{cannot_write}: {exc}")


def _show(findings: Findings, as_json: bool, extra: dict[str, Any]) -> None:
    if as_json:
        print_json({**findings.as_json(), **extra})
    else:
        table = Table(title_justify="left")
        table.add_column("check")
        table.add_column("")
        table.add_column("detail", overflow="fold")
        for item in findings.items:
            mark = "[green]ok[/]" if item.ok else "[red]FAILED[/]"
            table.add_row(item.check, mark, item.detail)
        console.print(table)
        failures = len(findings.failures())
        if failures:
            console.print(f"[red bold]{failures} check(s) failed.[/]")
        else:
            console.print("[green bold]Every check passed.[/]")
    if not findings.ok:
        raise typer.Exit(1)


@app.command("verify")
def verify(
    file: Annotated[
        Path | None,
        typer.Argument(help="An evidence file (`carveout audit export`) to check offline."),
    ] = None,
    from_log: Annotated[
        bool,
        typer.Option(
            "--from-log",
            help="Also rebuild every log leaf by leaf: the grant history from the signed "
            "records of carveout.grants, each decision log from the stored decisions held "
            "to carveout.access; each must give its signed roots.",
        ),
    ] = False,
    witness: Annotated[
        Path | None,
        typer.Option(
            help="Where the checkpoints verified last are kept (default: var/audit/witness.json)."
        ),
    ] = None,
    trusted_keys: TrustedKeysOption = None,
    bootstrap: BootstrapOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Verify the logs' checkpoints, and that each log only grew since the last verification.

    With FILE, verify an evidence file instead, with no network."""
    if file is not None:
        if from_log or witness is not None or bootstrap is not None:
            fail(
                "an evidence file is checked offline: "
                "--from-log, --witness and --bootstrap do not apply"
            )
        _verify_file(file, _trusted(trusted_keys, required=False), as_json)
        return
    trusted = _trusted(trusted_keys, required=True)
    assert trusted is not None
    path = witness or witness_path()
    with _failing_plainly(bootstrap or kafka_bootstrap(), f"cannot keep the witness file {path}"):
        findings = Findings()
        services = Services(auditor_token())
        before = load_witness(path, trusted)
        check_served_keys(findings, services, trusted, LOG_SERVICES)
        latest = check_checkpoints(findings, services, trusted)
        grown = check_growth(findings, services, before, latest)
        if from_log:
            with reading_progress(err, transient=True, disable=as_json) as step:
                _rebuild(
                    findings,
                    services,
                    trusted,
                    bootstrap or kafka_bootstrap(),
                    latest,
                    before,
                    step,
                )
        save_witness(path, {**before, **{log: latest[log] for log in grown if log in latest}})
    logs = {log: {"size": seen.size} for log, seen in sorted(latest.items())}
    _show(findings, as_json, {"logs": logs, "witness": str(path)})


def _rebuild(
    findings: Findings,
    services: Services,
    trusted: TrustedKeys,
    bootstrap: str,
    latest: dict[str, Any],
    before: dict[str, Any],
    step: Callable[[str, int, int], None],
) -> None:
    signed, unsigned = asyncio.run(signed_grant_events(bootstrap, trusted, step))
    if unsigned:
        findings.add(
            "carveout.grants records", True, f"{unsigned} without a valid signature: in no log"
        )
    check_grant_history(findings, services, latest.get("carveout.grants"), signed, step)
    decision_logs = [log for log in sorted(latest) if owner_of(log) == "enforcement"]
    if decision_logs:
        accesses = asyncio.run(accesses_by_partition(bootstrap, step))
        for log in decision_logs:
            check_decision_log(findings, services, latest[log], before.get(log), accesses, step)


def _verify_file(file: Path, trusted: TrustedKeys | None, as_json: bool) -> None:
    try:
        evidence = read_evidence(file)
    except AuditError as exc:
        fail(str(exc))
    findings = verify_evidence(evidence, trusted)
    applied = propagation(evidence)
    if not as_json:
        console.print(f"Evidence of grant [bold]{evidence.grant_id}[/] ({file})", highlight=False)
        for version, enforcers in applied.items():
            who = ", ".join(f"{e['enforcer_id']} at {e['applied_at']}" for e in enforcers)
            console.print(f"  version {version} applied by {who}", highlight=False)
    _show(findings, as_json, {"grant_id": evidence.grant_id, "propagation": applied})


@app.command("export")
def export(
    grant: Annotated[str, typer.Option("--grant", help="The grant whose evidence to gather.")],
    out: Annotated[
        Path | None,
        typer.Option(help="Where to write it (default: var/audit/evidence-<grant>-<time>.json)."),
    ] = None,
    trusted_keys: TrustedKeysOption = None,
    bootstrap: BootstrapOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Write one grant's evidence file, which `carveout audit verify FILE` checks offline.

    It holds the grant's signed events, their propagation, its breaches with their
    decisions' inclusion proofs, its notifications, the checkpoints and the public keys."""
    if not 0 < len(grant) <= 200 or not grant.isprintable():
        fail("--grant is a grant id: 1 to 200 printable characters")
    trusted = _trusted(trusted_keys, required=True)
    assert trusted is not None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = out or var_dir() / "audit" / f"evidence-{_SAFE_NAME.sub('_', grant)}-{stamp}.json"
    with _failing_plainly(bootstrap or kafka_bootstrap(), f"cannot write {path}"):
        services = Services(auditor_token())
        with reading_progress(err, transient=True, disable=as_json) as step:
            document = asyncio.run(
                gather(grant, bootstrap or kafka_bootstrap(), services, trusted, step)
            )
        write_evidence(path, document)
    findings = verify_evidence(Evidence.model_validate(document), trusted)
    counts = {
        part: len(document[part])
        for part in ("grant_events", "breaches", "notifications", "acknowledgements", "checkpoints")
    }
    if not as_json:
        told = ", ".join(f"{n} {part.replace('_', ' ')}" for part, n in counts.items())
        console.print(f"Wrote the evidence of {grant} to {path}: {told}.", highlight=False)
    _show(findings, as_json, {"file": str(path), "counts": counts})
