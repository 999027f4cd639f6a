"""Run the whole system the way a user does (``carveout up``), on free ports, for tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from carveout_ops.broker import free_port

from .kafka import KEYS_BY_BOOTSTRAP

T = TypeVar("T")
SERVICES = ("grant", "enforcement", "notification")


def wait_for(check: Callable[[], T | None], within: float, what: str, every: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy, or fail naming ``what``."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"{what}: not within {within}s (last: {last!r})")


@dataclass
class System:
    var_dir: Path
    external_bootstrap: str | None = None
    ports: dict[str, int] = field(default_factory=lambda: {s: free_port() for s in SERVICES})
    broker_port: int = field(default_factory=free_port)
    console_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        return self.external_bootstrap or f"127.0.0.1:{self.broker_port}"

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    @property
    def console_url(self) -> str:
        return f"http://127.0.0.1:{self.console_port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CARVEOUT_")}
        env.update(
            CARVEOUT_VAR_DIR=str(self.var_dir),
            CARVEOUT_BROKER_PORT=str(self.broker_port),
            CARVEOUT_SESSION_TIMEOUT_MS="3000",
            CARVEOUT_CONSOLE_PORT=str(self.console_port),
            **{f"CARVEOUT_{s.upper()}_PORT": str(p) for s, p in self.ports.items()},
        )
        if self.external_bootstrap:
            env["CARVEOUT_KAFKA_BOOTSTRAP"] = self.external_bootstrap
        env.update(self.extra_env)
        return env

    def start(self, within: float = 60) -> None:
        KEYS_BY_BOOTSTRAP[self.bootstrap] = self.var_dir / "keys"
        self.log_path = self.var_dir / f"up-{int(time.time() * 1000)}.log"
        self.var_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "carveout_ops", "up"],
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"carveout up exited:\n{self.output()}")
            return all(self._ready(s) for s in SERVICES)

        try:
            wait_for(ready, within, "all three services ready", every=0.1)
        except AssertionError:
            output = self.output()
            # Never leave a half-started system (broker and services) running behind.
            with contextlib.suppress(AssertionError):
                self.stop()
            raise AssertionError(f"system not ready; output:\n{output}") from None

    def _ready(self, service: str) -> bool:
        try:
            return httpx.get(self.url(service) + "/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def stop(self, within: float = 30) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(within)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"carveout up did not stop on SIGINT:\n{self.output()}") from None

    def tokens(self) -> dict[str, str]:
        tokens: dict[str, str] = json.loads((self.var_dir / "tokens.json").read_text())
        return tokens

    def call(
        self, service: str, method: str, path: str, role: str | None = "regulator", **kwargs: Any
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens()[role]}"} if role else {}
        return httpx.request(
            method, self.url(service) + path, headers=headers, timeout=10, **kwargs
        )
