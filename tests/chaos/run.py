"""One chaos run: start the system, drive it, inject the scheduled faults, settle, check."""

from __future__ import annotations

import random
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ..receivers import WebhookReceiver
from ..system import wait_for
from .checks import Check, digests, effects, settle
from .cluster import Cluster
from .databases import DEFAULT_ADMIN_URL, Databases
from .faults import KINDS, Injector, schedule
from .load import Load


@dataclass
class Settings:
    faults: int = 100
    seed: int | None = None
    pause_s: float = 1.0
    """Pacing between faults (load, not synchronisation): drawn from 0.5x to 1.5x this."""
    rate_per_s: float = 40.0
    cap: int = 150
    settle_s: float = 180.0
    admin_url: str = DEFAULT_ADMIN_URL
    var_dir: Path | None = None
    keep: bool = False


@dataclass
class Result:
    seed: int
    faults: Counter[str]
    detail: Counter[str]
    actions: Counter[str]
    accepted: Counter[str]
    lost: int
    checks: list[Check]
    seconds: float
    errors: Counter[str] = field(default_factory=Counter)
    var_dir: str = ""

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "seed": self.seed,
            "seconds": round(self.seconds, 1),
            "faults": dict(self.faults),
            "faults_total": sum(self.faults.values()),
            "fault_detail": dict(self.detail),
            "regulator_actions": dict(self.actions),
            "accesses_accepted": dict(self.accepted),
            "accesses_lost_with_broker": self.lost,
            "checks": [
                {"what": c.what, "expected": c.expected, "found": c.found, "ok": c.ok}
                for c in self.checks
            ],
            "client_errors_retried": dict(self.errors),
            "var_dir": self.var_dir,
        }


def run(settings: Settings, console: Console) -> Result:
    seed = settings.seed if settings.seed is not None else random.randrange(2**32)
    console.print(f"[bold]chaos[/]: seed {seed}, {settings.faults} faults", highlight=False)
    rng = random.Random(seed)
    started = time.monotonic()
    var_dir = settings.var_dir or Path(tempfile.mkdtemp(prefix="carveout-chaos-"))
    databases = Databases(settings.admin_url)
    databases.create()
    hook = WebhookReceiver(failures=1)
    hook.start()
    cluster = Cluster.make(var_dir, databases)
    load = Load(
        cluster,
        hook.url,
        seed=rng.randrange(2**32),
        rate_per_s=settings.rate_per_s,
        cap=settings.cap,
    )
    try:
        cluster.system.start(within=120)
        for replica in cluster.every_replica:
            wait_for(lambda r=replica: cluster.ready(r), 90, f"{replica.label} ready", every=0.2)  # type: ignore[misc]
        console.print(f"system up in {time.monotonic() - started:.0f}s ({var_dir})")
        created = cluster.call(
            "notification",
            0,
            "POST",
            "/v1/subscriptions",
            json={"channel": "webhook", "address": hook.url, "event_types": ["condition.breached"]},
        )
        assert created.status_code == 201, created.text
        subscription: str = created.json()["subscription_id"]
        load.start()
        injector = Injector(
            cluster,
            load,
            random.Random(rng.random()),
            log=lambda line: console.print(
                f"  [dim]{time.monotonic() - started:6.1f}s[/] {line}", highlight=False
            ),
        )
        checks: list[Check] = []
        try:
            for n, kind in enumerate(schedule(rng, settings.faults), 1):
                console.print(f"[bold]fault {n}/{settings.faults}[/]: {kind}", highlight=False)
                injector.inject(kind)
                time.sleep(settings.pause_s * rng.uniform(0.5, 1.5))  # pacing, not a wait
            load.stop()
            console.print("faults done; settling")
            settle(cluster, load, injector, hook, settings.settle_s)
        except AssertionError as exc:  # the system did not come back: that is the finding
            load.stop()
            console.print(f"[red]the system did not recover[/]: {exc}", highlight=False)
            checks.append(Check("the system recovered from every fault", "yes", str(exc)[:300]))
        else:
            checks += effects(cluster, load, injector, hook, subscription)
            console.print("checking digests against replays")
            checks += digests(cluster, injector)
        return Result(
            seed,
            injector.injected,
            injector.detail,
            load.actions,
            load.accepted.by_gateway,
            injector.lost,
            checks,
            time.monotonic() - started,
            load.errors,
            str(var_dir),
        )
    finally:
        load.stop()
        try:
            cluster.system.stop(within=60)
        finally:
            hook.stop()
            if not settings.keep:
                databases.close()


def summary(result: Result, console: Console) -> None:
    faults = Table(title=f"Faults injected (seed {result.seed})", title_justify="left")
    faults.add_column("fault")
    faults.add_column("count", justify="right")
    for kind in KINDS:
        faults.add_row(kind, str(result.faults.get(kind, 0)))
    faults.add_row("[bold]total[/]", f"[bold]{sum(result.faults.values())}[/]")
    console.print(faults)
    detail = Table(title="Fault detail", title_justify="left")
    detail.add_column("what")
    detail.add_column("count", justify="right")
    for what, count in sorted(result.detail.items()):
        detail.add_row(what, str(count))
    console.print(detail)
    load = ", ".join(f"{k} {v}" for k, v in sorted(result.accepted.items()))
    actions = ", ".join(f"{k} {v}" for k, v in sorted(result.actions.items()))
    console.print(f"accesses accepted: {load}; regulator actions: {actions}", highlight=False)
    if result.lost:
        console.print(
            f"{result.lost} accesses were on the broker's log, not yet judged, when it died: "
            "counted in carveout_records_lost_total and /readyz, and subtracted from those "
            "to judge",
            highlight=False,
        )
    checks = Table(title="Effects checked", title_justify="left")
    checks.add_column("effect")
    checks.add_column("expected", justify="right")
    checks.add_column("found", justify="right")
    checks.add_column("")
    for check in result.checks:
        mark = "[green]ok[/]" if check.ok else "[red]MISMATCH[/]"
        checks.add_row(check.what, str(check.expected), str(check.found), mark)
    console.print(checks)
    verdict = "[green]passed[/]" if result.ok else "[red]FAILED[/]"
    console.print(
        f"chaos {verdict} in {result.seconds:.0f}s; repeat with --seed {result.seed}",
        highlight=False,
    )
