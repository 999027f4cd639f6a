"""``carveout up``: the broker, the topics and the three services, kept running together."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
from rich.console import Console
from rich.table import Table

from carveout_runtime.addresses import LOOPBACK_NETWORKS
from carveout_runtime.auth import TokenBook

from .broker import (
    BrokerError,
    EmbeddedBroker,
    ensure_topics,
    partitions_from_env,
    wait_for_broker,
)
from .keys import keys_dir, prepare_keys, trusted_keys_file
from .system import (
    CONSOLE,
    SERVICES,
    ServiceAddress,
    address,
    database_url,
    tokens_file,
    var_dir,
)

STYLES = {
    "grant": "cyan",
    "enforcement": "magenta",
    "notification": "green",
    "broker": "yellow",
    CONSOLE: "blue",
}


MAX_REPLICAS = 16
"""More processes of one service than this on one machine is a typo, not a plan."""


def replicas_refusal(replicas: int) -> str | None:
    """Why ``carveout up`` cannot run ``replicas`` processes of each service, or ``None``."""
    if not 1 <= replicas <= MAX_REPLICAS:
        return f"--replicas must be from 1 to {MAX_REPLICAS}, not {replicas}"
    if replicas == 1:
        return None
    on_sqlite = [name for name in SERVICES if database_url(name).startswith("sqlite")]
    if not on_sqlite:
        return None
    needed = ", ".join(f"CARVEOUT_{name.upper()}_DATABASE_URL" for name in on_sqlite)
    return (
        f"--replicas {replicas} needs PostgreSQL: the replicas of a service share its one "
        f"database, and a SQLite file cannot be shared between processes. Set {needed} "
        "to postgresql+psycopg://… URLs (one database per service)."
    )


@dataclass
class ServiceProcess:
    name: str
    env: dict[str, str]
    console: Console
    replica: int = 0
    process: subprocess.Popen[str] | None = None
    restarts: int = 0
    started_at: float = 0.0
    _pump: threading.Thread | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        """The service's name, with the replica's number when it is not the first."""
        return self.name if self.replica == 0 else f"{self.name}-{self.replica}"

    @property
    def address(self) -> ServiceAddress:
        return address(self.name, self.replica)

    def start(self) -> None:
        env = {**self.env, f"CARVEOUT_{self.name.upper()}_PORT": str(self.address.port)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"carveout_{self.name}", "serve"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.started_at = time.monotonic()
        pid_file = var_dir() / "run" / f"{self.label}.pid"
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(f"{self.process.pid}\n")
        self._pump = threading.Thread(target=self._echo, args=(self.process.stdout,), daemon=True)
        self._pump.start()

    def _echo(self, stream: IO[str] | None) -> None:
        if stream is None:
            return
        style = STYLES.get(self.name, "white")
        for line in stream:
            self.console.print(
                f"[{style}]{self.label:>12}[/] | {line.rstrip()}", highlight=False, soft_wrap=True
            )

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


class Supervisor:
    def __init__(self, console: Console, replicas: int = 1) -> None:
        self.console = console
        self.replicas = replicas
        self.broker: EmbeddedBroker | None = None
        self.services: list[ServiceProcess] = []
        self._stopping = threading.Event()

    def _service_env(self, bootstrap: str) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("CARVEOUT_SESSION_TIMEOUT_MS", "3000")
        env["CARVEOUT_KAFKA_BOOTSTRAP"] = bootstrap
        env["CARVEOUT_TOKENS_FILE"] = str(tokens_file().resolve())
        # Every service signs what it publishes and checks what it consumes (DESIGN §12).
        env["CARVEOUT_KEYS_DIR"] = str(keys_dir().resolve())
        env["CARVEOUT_TRUSTED_KEYS"] = str(trusted_keys_file().resolve())
        if self.broker is not None:
            env["CARVEOUT_BROKER_EPOCH_FILE"] = str(broker_epoch_file().resolve())
        # Webhooks to this machine (local receivers, the demo's) work; every other private
        # or reserved range stays closed unless the operator opens it.
        env.setdefault("CARVEOUT_NOTIFICATION_WEBHOOK_ALLOW_NETWORKS", LOOPBACK_NETWORKS)
        for name in SERVICES:
            env.setdefault(f"CARVEOUT_{name.upper()}_DATABASE_URL", database_url(name))
            # The console calls each service's first replica.
            env.setdefault(f"CARVEOUT_CONSOLE_{name.upper()}_URL", address(name).url)
        return env

    def request_stop(self, *_: object) -> None:
        self._stopping.set()

    def start_broker(self) -> str:
        external = os.environ.get("CARVEOUT_KAFKA_BOOTSTRAP")
        if external:
            self.console.print(f"[yellow]broker[/]: using {external} (CARVEOUT_KAFKA_BOOTSTRAP)")
            asyncio.run(wait_for_broker(external))
            bootstrap = external
        else:
            port = int(os.environ.get("CARVEOUT_BROKER_PORT", "9092"))
            self.broker = EmbeddedBroker(port=port, log_file=var_dir() / "broker.log")
            with self.console.status(f"starting the embedded broker on 127.0.0.1:{port}"):
                self.broker.start()
                asyncio.run(wait_for_broker(self.broker.bootstrap))
            bootstrap = self.broker.bootstrap
        created = asyncio.run(ensure_topics(bootstrap, partitions_from_env()))
        if created:
            self.console.print(f"[yellow]broker[/]: created topics {', '.join(created)}")
        if self.broker is not None:
            write_epoch()
        return bootstrap

    def wait_ready(self, timeout: float = 90.0) -> bool:
        deadline = time.monotonic() + timeout
        pending = {service.label: service.address for service in self.services}
        with self.console.status("waiting for the services to be ready") as status:
            while pending and time.monotonic() < deadline and not self._stopping.is_set():
                for label, where in sorted(pending.items()):
                    try:
                        if httpx.get(where.url + "/readyz", timeout=1).status_code == 200:
                            del pending[label]
                    except httpx.HTTPError:
                        pass
                status.update(f"waiting for {', '.join(sorted(pending))} to be ready")
                time.sleep(0.2)
        return not pending

    def print_summary(self, book: TokenBook, created: bool) -> None:
        table = Table(title="Carveout is running", show_header=True)
        table.add_column("part")
        table.add_column("address")
        for service in self.services:
            table.add_row(service.label, service.address.url)
        table.add_row("broker", self.bootstrap)
        self.console.print(table)
        where = tokens_file()
        self.console.print(
            f"API tokens ({'new, ' if created else ''}from {where}):", highlight=False
        )
        for role, token in book.as_json().items():
            self.console.print(f"  {role:<10} {token}", highlight=False)
        self.console.print("Stop with Ctrl-C.\n")

    def run(self) -> int:
        refusal = replicas_refusal(self.replicas)
        if refusal is not None:
            self.console.print(f"[red]error:[/] {refusal}", highlight=False)
            return 2
        # Stores, tokens and logs live here: only the owner may list or enter it.
        var_dir().mkdir(mode=0o700, parents=True, exist_ok=True)
        var_dir().chmod(0o700)
        book, created = TokenBook.load_or_create(tokens_file())
        prepare_keys()
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGTERM, self.request_stop)
        try:
            try:
                self.bootstrap = self.start_broker()
            except BrokerError as exc:
                self.console.print(f"[red]error:[/] {exc}", highlight=False)
                return 1
            env = self._service_env(self.bootstrap)
            self.services = [
                ServiceProcess(name, env, self.console, replica)
                for name in SERVICES
                for replica in range(self.replicas)
            ]
            self.services.append(ServiceProcess(CONSOLE, env, self.console))
            for service in self.services:
                service.start()
            if self.wait_ready():
                self.print_summary(book, created)
            elif not self._stopping.is_set():
                self.console.print("[red]some services are not ready yet; see their logs above[/]")
            self._watch()
        finally:
            self.shutdown()
        return 0

    def _watch(self) -> None:
        while not self._stopping.wait(0.5):
            if self.broker is not None and not self.broker.alive():
                self.restart_broker()
                continue
            for service in self.services:
                code = service.exited()
                if code is None:
                    continue
                service.restarts += 1
                delay = min(2 ** min(service.restarts, 5) * 0.25, 5.0)
                if time.monotonic() - service.started_at > 60:
                    service.restarts = 0
                self.console.print(
                    f"[red]{service.label} exited with code {code}; restarting in {delay:.1f}s[/]"
                )
                if self._stopping.wait(delay):
                    return
                service.start()

    def restart_broker(self) -> None:
        """Start the embedded broker again, empty, and its topics; the services keep
        running: each puts back the topics its store is the record of, and its consumers
        notice their topics restarted from zero (DESIGN §11)."""
        assert self.broker is not None
        self.console.print("[red]the embedded broker died; restarting it[/]")
        try:
            self.broker.start()
            asyncio.run(wait_for_broker(self.broker.bootstrap))
            asyncio.run(ensure_topics(self.broker.bootstrap, partitions_from_env()))
            write_epoch()  # after the topics: a service told of the restart finds them
        except BrokerError as exc:
            self.console.print(f"[red]the embedded broker did not restart: {exc}[/]")
            self.broker.stop()

    def shutdown(self) -> None:
        if self.services:
            self.console.print("stopping the services")
        for service in self.services:
            service.terminate()
        for service in self.services:
            service.stop()
        if self.broker is not None:
            self.broker.stop()


def broker_epoch_file() -> Path:
    return var_dir() / "run" / "broker.epoch"


def write_epoch() -> None:
    """A new epoch for the embedded broker, which has just (re)started with an empty log."""
    path = broker_epoch_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{time.time_ns()}\n")


def run_up(console: Console | None = None, replicas: int = 1) -> int:
    return Supervisor(console or Console(), replicas).run()
