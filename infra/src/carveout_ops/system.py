"""Where the parts of a running Carveout system are, from the same environment the services read."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SERVICES: tuple[str, ...] = ("grant", "enforcement", "notification")
CONSOLE = "console"
"""The regulator console: a process of ``carveout up`` too, over the services' APIs."""
DEFAULT_PORTS = {"grant": 8081, "enforcement": 8082, "notification": 8083, CONSOLE: 8080}


def var_dir() -> Path:
    return Path(os.environ.get("CARVEOUT_VAR_DIR", "var"))


def database_url(service: str) -> str:
    """The live store of ``service``: its ``..._DATABASE_URL``, else SQLite under the var dir."""
    return os.environ.get(
        f"CARVEOUT_{service.upper()}_DATABASE_URL",
        f"sqlite:///{(var_dir() / f'{service}.db').resolve()}",
    )


def kafka_bootstrap() -> str:
    return os.environ.get("CARVEOUT_KAFKA_BOOTSTRAP", "127.0.0.1:9092")


def tokens_file() -> Path:
    return Path(os.environ.get("CARVEOUT_TOKENS_FILE", str(var_dir() / "tokens.json")))


@dataclass(frozen=True)
class ServiceAddress:
    name: str
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


REPLICA_PORT_STEP = 10
"""Replica *i* of a service listens on the service's port + 10·*i* (DESIGN §11)."""


def replica_port(port: int, replica: int) -> int:
    return port + REPLICA_PORT_STEP * replica


def address(service: str, replica: int = 0) -> ServiceAddress:
    """Where ``service`` (its replica ``replica``) listens."""
    prefix = f"CARVEOUT_{service.upper()}_"
    url = os.environ.get(prefix + "URL")
    if url:
        host_port = url.split("://", 1)[-1].rstrip("/")
        host, _, port = host_port.rpartition(":")
        return ServiceAddress(service, host, replica_port(int(port), replica))
    return ServiceAddress(
        service,
        os.environ.get(prefix + "HOST", "127.0.0.1"),
        replica_port(int(os.environ.get(prefix + "PORT", DEFAULT_PORTS[service])), replica),
    )
