"""The scenario ``carveout demo`` narrates: the product in two minutes, with timings.

A regulator issues carveout ``co-mythos-2026`` for ``mythos-preview`` to a network-security
firm; its gateway sends weeks of scanning traffic; a user in an embargoed country tries; a
request comes without MFA; a third critical breach trips the breach policy and the
carveout is revoked; the next access is denied; the grantee's webhook and the regulator's
email are told.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from carveout_contracts import encode_token
from carveout_runtime.auth import Role

from .broker import free_port
from .client import ApiFailure, call
from .load import AccessTemplate, publish, scanning_traffic
from .system import address, tokens_file, var_dir

DEMO_GRANT: dict[str, Any] = {
    "carveout_id": "co-mythos-2026",
    "model_id": "mythos-preview",
    "valid_from": "2026-06-28T00:00:00Z",
    "valid_until": "2027-12-31T00:00:00Z",
    "conditions": [
        {"id": "countries", "kind": "user_countries", "allow": ["US", "GB", "IN"],
         "severity": "critical"},
        {"id": "embargo", "kind": "user_countries", "deny": ["KP", "IR", "CU", "SY", "RU"],
         "severity": "critical"},
        {"id": "regions", "kind": "deployment_regions", "allow": ["us-east", "us-west"],
         "severity": "critical"},
        {"id": "purpose", "kind": "purposes", "allow": ["vulnerability-scanning"],
         "severity": "warning"},
        {"id": "safeguards", "kind": "safeguards", "require": ["access_logging", "mfa"],
         "severity": "critical"},
        {"id": "cap", "kind": "usage_cap", "units": 1000000, "window": "day",
         "severity": "warning"},
    ],
    "breach_policy": {"suspend_after_critical": None, "revoke_after_critical": 3,
                      "window_seconds": 3600},
}  # fmt: skip


class _Hooks:
    """The grantee's webhook endpoint, for the demo: accepts and keeps what it is sent."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                hooks.received.append(json.loads(body))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        # Port 0: the system picks a free port as it binds, so no other process can take
        # it between choosing and binding.
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/carveout"


class _Mailbox:
    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[Any] = []
        self.port = free_port()
        box = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                box.messages.append(message_from_bytes(envelope.content))
                return "250 OK"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()


def _running() -> bool:
    try:
        return httpx.get(address("grant").url + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _wait(check: Any, within: float) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.02)
    return None


class Demo:
    def __init__(self, console: Console, events: int) -> None:
        self.console = console
        self.events = events
        self.timings: list[tuple[str, str]] = []
        self.process: subprocess.Popen[bytes] | None = None
        self.mailbox: _Mailbox | None = None
        self.failed = False
        """A step was not seen in time: the demo ends with an error."""

    def say(self, text: str) -> None:
        self.console.print(f"\n[bold cyan]▶[/] {text}")

    def took(self, what: str, started: float, ok: object = True) -> float:
        ms = (time.perf_counter() - started) * 1000
        self.timings.append((what if ok else f"{what}: NOT SEEN", f"{ms:,.1f} ms"))
        mark = "[green]✓[/]" if ok else "[red]✗ not seen in time:[/]"
        self.console.print(f"  {mark} {what} [dim]({ms:,.1f} ms)[/]")
        if not ok:
            self.failed = True
        return ms

    def start_system(self) -> None:
        self.mailbox = _Mailbox()
        env = {
            **os.environ,
            "CARVEOUT_SMTP_HOST": "127.0.0.1",
            "CARVEOUT_SMTP_PORT": str(self.mailbox.port),
        }
        var_dir().mkdir(parents=True, exist_ok=True)
        log = open(var_dir() / "demo-up.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "carveout_ops", "up"], env=env, stdout=log, stderr=log
        )
        with self.console.status("no system answers: starting one (carveout up)"):
            ok = _wait(
                lambda: (
                    tokens_file().exists()
                    and all(
                        _ready(address(s).url) for s in ("grant", "enforcement", "notification")
                    )
                ),
                90,
            )
        if not ok:
            raise ApiFailure(f"the system did not start; see {var_dir() / 'demo-up.log'}")

    def stop_system(self) -> None:
        if self.process is not None:
            self.process.send_signal(2)
            self.process.wait(30)
        if self.mailbox is not None:
            self.mailbox.controller.stop()

    def decisions(self, grantee: str) -> int:
        page = call(
            "enforcement", "GET", "/v1/decisions", role=Role.AUDITOR,
            params={"grantee_id": grantee, "limit": 1},
        )  # fmt: skip
        return int(page["total"])

    def run(self) -> None:
        if not _running():
            self.start_system()
        try:
            self.scenario()
        finally:
            self.stop_system()

    def scenario(self) -> None:
        hooks = _Hooks()
        grantee = f"org-netsec-{uuid.uuid4().hex[:6]}"
        bootstrap = os.environ.get("CARVEOUT_KAFKA_BOOTSTRAP", "127.0.0.1:9092")

        self.say(f"A regulator issues carveout co-mythos-2026 to {grantee} for mythos-preview.")
        started = time.perf_counter()
        grant = call(
            "grant", "POST", "/v1/grants", role=Role.REGULATOR,
            body={**DEMO_GRANT, "grantee": {"id": grantee, "name": "Example Network Security Inc.",
                  "contacts": [{"kind": "webhook", "address": hooks.url}]}},
        )  # fmt: skip
        gid = grant["grant_id"]
        self.took(f"grant {gid} issued (users in US/GB/IN; us-east/us-west; MFA)", started)
        call(
            "notification", "POST", "/v1/subscriptions", role=Role.REGULATOR,
            body={"channel": "email", "address": "duty-officer@regulator.example",
                  "event_types": ["carveout.revoked"], "grantee_id": grantee},
        )  # fmt: skip
        started = time.perf_counter()
        known = _wait(lambda: _known(gid), 5)
        self.took("enforcement has the grant", started, known)

        self.say(f"The firm's gateway scans code: {self.events:,} accesses spread over six weeks.")
        template = AccessTemplate(grantee_id=grantee, gateway_id="gw-demo")
        traffic = scanning_traffic(
            template,
            self.events,
            start=datetime.now(UTC) - timedelta(days=42),
            span=timedelta(days=41),
        )
        started = time.perf_counter()
        asyncio.run(publish(bootstrap, traffic))
        judged = _wait(lambda: self.decisions(grantee) >= self.events, 120)
        ms = self.took(f"{self.events:,} accesses judged and recorded", started, judged)
        self.timings.append(("throughput", f"{self.events / (ms / 1000):,.0f} accesses/s"))

        now = datetime.now(UTC)
        bad: list[tuple[str, dict[str, Any]]] = [
            ("A user in an embargoed country (KP) tries.", {"user_country": "KP"}),
            ("A request comes without MFA.", {"safeguards": ["access_logging"]}),
            ("A job runs in an unapproved region (eu-central).",
             {"deployment_region": "eu-central"}),
        ]  # fmt: skip
        for n, (line, change) in enumerate(bad):
            self.say(line)
            started = time.perf_counter()
            event = template.event(now - timedelta(seconds=30 - n), **change)
            asyncio.run(publish(bootstrap, iter([event])))
            found = _wait(lambda e=event: _breach_of(grantee, e["event_id"]), 10)
            self.took("critical breach found and published", started, found)
            if found:
                kinds = ", ".join(
                    f"{v['condition_id']} ({v['actual']})" for v in found["violations"]
                )
                self.console.print(f"    violated: {kinds}")

        self.say("Three critical breaches within the hour: the breach policy revokes the carveout.")
        started = time.perf_counter()
        revoked = _wait(lambda: _status(gid) == "revoked", 10)
        self.took("grant revoked by its breach policy", started, revoked)

        self.say("The next access is denied.")
        view = call("grant", "GET", f"/v1/grants/{gid}", role=Role.AUDITOR)
        started = time.perf_counter()
        answer = call(
            "enforcement", "POST", "/v1/decisions", role=Role.GATEWAY,
            body={"grantee_id": grantee, "model_id": "mythos-preview", "user_id": "user-7",
                  "user_country": "US", "deployment_region": "us-east",
                  "purpose": "vulnerability-scanning", "safeguards": ["access_logging", "mfa"],
                  "units": 100, "gateway_id": "gw-demo",
                  "min_consistency": encode_token({gid: view["version"]})},
        )  # fmt: skip
        self.took(f"decision: {answer['decision']} ({answer['violations'][0]['actual']})", started)

        self.say("Everyone concerned is told.")
        started = time.perf_counter()
        told = _wait(lambda: any(h.get("type") == "carveout.revoked" for h in hooks.received), 20)
        types = sorted({h.get("type", "?") for h in hooks.received})
        self.took(f"grantee's webhook received: {', '.join(types) or 'nothing'}", started, told)
        if self.mailbox is not None:
            mailed = _wait(lambda: self.mailbox.messages if self.mailbox else None, 20)
            if not mailed:
                self.console.print("    [red]✗ no email reached the regulator in time[/]")
                self.failed = True
            for mail in self.mailbox.messages:
                self.console.print(f"    email to {mail['To']}: {mail['Subject']}")
        notes = call(
            "notification", "GET", "/v1/notifications", role=Role.AUDITOR, params={"limit": 50}
        )
        table = Table(title="Carveout demo: what happened, and how fast")
        table.add_column("step")
        table.add_column("time", justify="right")
        for what, how in self.timings:
            table.add_row(what, how)
        table.add_row("notifications recorded", str(notes["total"]))
        self.console.print()
        self.console.print(table)
        hooks.server.shutdown()


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _known(grant_id: str) -> bool:
    try:
        call("enforcement", "GET", f"/v1/grants/{grant_id}", role=Role.AUDITOR)
    except ApiFailure:
        return False
    return True


def _status(grant_id: str) -> str:
    return str(call("grant", "GET", f"/v1/grants/{grant_id}", role=Role.AUDITOR)["status"])


def _breach_of(grantee: str, event_id: str) -> dict[str, Any] | None:
    page = call(
        "enforcement", "GET", "/v1/breaches", role=Role.AUDITOR, params={"grantee_id": grantee}
    )
    return next((b for b in page["items"] if b["access_event_id"] == event_id), None)


def run_demo(console: Console, events: int) -> bool:
    """Run the scenario; says whether every step was seen in time."""
    demo = Demo(console, events)
    demo.run()
    return not demo.failed
