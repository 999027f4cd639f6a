"""The production stack (docker-compose.yml) holds together, checked without Docker.

Every test here reads files only: the compose file, infra/Dockerfile, the collector's
configuration and the services' own settings classes. ``docker compose config`` is run
as well when the compose plugin is installed (it needs no Docker engine).
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer
import yaml  # type: ignore[import-untyped]
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SERVICES = {"grant": 8081, "enforcement": 8082, "notification": 8083}
"""The three services and their default ports."""
STACK = {"kafka", "postgres", "topics", *SERVICES, "otel-collector", "jaeger"}
"""The containers a user of the stack relies on, by name."""
TOKENS = ("CARVEOUT_REGULATOR_TOKEN", "CARVEOUT_GATEWAY_TOKEN", "CARVEOUT_AUDITOR_TOKEN")
USER_ENV = {name: f"test-{name.lower()}" for name in TOKENS}
"""The least a user must export before ``docker compose up``."""


# -- reading the compose file the way compose does ------------------------------------------


class MissingVariable(KeyError):
    pass


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's variable substitution: ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}``..."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            depth, j = 0, i + 1
            while True:
                if j >= len(text):
                    raise ValueError(f"unclosed ${{ in {text!r}")
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                if depth == 0:
                    break
                j += 1
            out.append(_substitute(text[i + 2 : j], env))
            i = j + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _substitute(body: str, env: Mapping[str, str]) -> str:
    match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?", body, re.S)
    assert match, f"cannot read ${{{body}}}"
    name, operator, argument = match.groups()
    value = env.get(name)
    if operator is None:
        return value or ""
    unset = value is None or (operator.startswith(":") and value == "")
    kind = operator[-1]
    if kind == "-":
        return interpolate(argument, env) if unset else str(value)
    if kind == "?":
        if unset:
            raise MissingVariable(f"{name}: {argument}")
        return str(value)
    return "" if unset else interpolate(argument, env)


def resolved(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [resolved(item, env) for item in node]
    if isinstance(node, dict):
        return {key: resolved(value, env) for key, value in node.items()}
    return node


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker-compose.yml as written (anchors and merge keys applied, variables not)."""
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def environment(service: dict[str, Any], env: Mapping[str, str] = USER_ENV) -> dict[str, str]:
    """The environment a container gets, with the user's variables and the defaults."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {key: "" if v is None else str(resolved(str(v), env)) for key, v in raw.items()}


def long_running(service: dict[str, Any]) -> bool:
    """Everything but the one-shot jobs (``restart: "no"``)."""
    return bool(service.get("restart", "no") != "no")


def published_ports(service: dict[str, Any]) -> set[tuple[int, int]]:
    """``(published, container)`` pairs."""
    pairs = set()
    for port in service.get("ports", []):
        if isinstance(port, dict):
            pairs.add((int(port["published"]), int(port["target"])))
            continue
        parts = interpolate(str(port), USER_ENV).split("/")[0].split(":")
        pairs.add((int(parts[-2]), int(parts[-1])) if len(parts) > 1 else (0, int(parts[0])))
    return pairs


def bind_mounts(service: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """``(source, target)`` of the volumes that mount a path (not a named volume)."""
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                yield volume["source"], volume["target"]
            continue
        source, target = str(volume).split(":")[:2]
        if source.startswith((".", "/", "~")):
            yield source, target


def healthcheck_url(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    urls = [part for part in test if isinstance(part, str) and "://" in part]
    assert len(urls) == 1, f"expected one URL in the healthcheck {test}"
    return urls[0]


# -- what the services really read --------------------------------------------------------


def _settings_classes(package: str) -> Iterator[type[BaseSettings]]:
    """Every settings class defined in ``package`` and its modules."""
    root = importlib.import_module(package)
    modules = [root]
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        if info.name.endswith("__main__"):
            continue
        try:
            modules.append(importlib.import_module(info.name))
        except ImportError:  # a module for an optional dependency that is not installed
            continue
    for module in modules:
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseSettings)
                and value is not BaseSettings
                and value.__module__ == module.__name__
            ):
                yield value


def env_names(settings: type[BaseSettings]) -> set[str]:
    """The environment variables a settings class reads (upper case)."""
    prefix = str(settings.model_config.get("env_prefix", ""))
    names: set[str] = set()
    for name, field in settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, str):
            names.add(alias)
        elif isinstance(alias, AliasChoices):
            names.update(choice for choice in alias.choices if isinstance(choice, str))
        elif field.alias:
            names.add(field.alias)
        else:
            names.add(prefix + name)
    return {name.upper() for name in names}


def service_settings(name: str) -> type[BaseSettings]:
    module = importlib.import_module(f"carveout_{name}.settings")
    [settings] = [
        cls
        for cls in vars(module).values()
        if isinstance(cls, type)
        and issubclass(cls, BaseSettings)
        and cls.__module__ == module.__name__
    ]
    return settings


def service_env_names(name: str) -> set[str]:
    """What a service reads: its settings class, and any shared settings class."""
    names = env_names(service_settings(name))
    for package in ("carveout_contracts", f"carveout_{name}"):
        for settings in _settings_classes(package):
            names |= env_names(settings)
    return names


def cli_command(app: typer.Typer, path: list[str]) -> Any:
    """The click command at ``path`` under a Typer app (a group's subcommands by name)."""
    command: Any = typer.main.get_command(app)
    for word in path:
        found = (getattr(command, "commands", None) or {}).get(word)
        assert found is not None, f"{' '.join(path)}: no such command"
        command = found
    return command


# -- the tests ----------------------------------------------------------------------------


def test_every_container_of_the_stack_is_there(services: dict[str, Any]) -> None:
    assert set(services) >= STACK, f"missing: {sorted(STACK - set(services))}"


def test_depends_on_names_real_services_and_waits_for_the_right_condition(
    services: dict[str, Any],
) -> None:
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on must give each a condition"
        for target, spec in depends_on.items():
            assert target in services, f"{name} depends on {target}, which does not exist"
            condition = (spec or {}).get("condition")
            expected = (
                "service_healthy"
                if long_running(services[target])
                else "service_completed_successfully"
            )
            assert condition == expected, f"{name} -> {target}: condition {condition!r}"
    # `docker compose up --wait` takes a one-shot job's exit for a failure unless a
    # long-running container waits for it to complete.
    for name, service in services.items():
        if not long_running(service):
            assert any(
                name in other.get("depends_on", {}) and long_running(other)
                for other in services.values()
            ), f"one-shot {name}: no long-running container waits for it"


def test_every_long_running_container_has_a_healthcheck(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if long_running(service):
            check = service.get("healthcheck") or {}
            assert check.get("test") and not check.get("disable"), f"{name}: no healthcheck"
    jobs = {name for name, service in services.items() if not long_running(service)}
    assert "topics" in jobs


def test_images_are_pinned(services: dict[str, Any]) -> None:
    for name, service in services.items():
        image = service.get("image")
        if image is None:
            assert "build" in service, f"{name}: neither image nor build"
            continue
        if "@sha256:" in image:
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: image {image!r} has no tag"
        assert tag != "latest", f"{name}: image {image!r} is not pinned"


def test_build_contexts_and_mounted_files_exist(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    named_volumes = set(compose.get("volumes") or {})
    for name, service in services.items():
        build = service.get("build")
        if build is not None:
            context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            assert context.is_dir(), f"{name}: build context {context} missing"
            dockerfile = context / (
                "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            )
            assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
        for source, _ in bind_mounts(service):
            path = (ROOT / source).resolve()
            assert path.is_relative_to(ROOT), f"{name}: mounts {source}, outside the repository"
            assert path.exists(), f"{name}: mounts {source}, which does not exist"
        for volume in service.get("volumes", []):
            if isinstance(volume, str) and not volume.startswith((".", "/", "~")):
                source = volume.split(":")[0]
                assert source in named_volumes, f"{name}: volume {source} is not declared"


def test_the_services_run_their_own_command(services: dict[str, Any]) -> None:
    for name in SERVICES:
        command = services[name]["command"]
        assert command == ["python", "-m", f"carveout_{name}", "serve"], f"{name}: {command}"
        main = importlib.import_module(f"carveout_{name}.__main__")
        cli_command(main.cli, ["serve"])
    from carveout_ops.cli import app

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["carveout"] == "carveout_ops.cli:main"
    command = services["topics"]["command"]
    assert command[0] == "carveout"
    cli_command(app, command[1:])


def test_carveout_variables_are_real_settings(services: dict[str, Any]) -> None:
    """A misspelt CARVEOUT_ variable would be ignored silently by the service: fail here."""
    for name in SERVICES:
        known = service_env_names(name)
        given = {key for key in environment(services[name]) if key.startswith("CARVEOUT_")}
        unknown = {key for key in given if key.upper() not in known}
        assert not unknown, f"{name} is given variables it does not read: {sorted(unknown)}"


def test_topics_job_variables_are_read_by_carveout_topics_create(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from carveout_ops.broker import partitions_from_env
    from carveout_ops.cli import app

    command = cli_command(app, ["topics", "create"])
    options = {
        envvar
        for param in command.params
        for envvar in ([param.envvar] if isinstance(param.envvar, str) else param.envvar or [])
    }
    env = environment(services["topics"])
    for key in list(os.environ):
        if key.startswith("CARVEOUT_PARTITIONS"):
            monkeypatch.delenv(key)
    for key in (k for k in env if k.startswith("CARVEOUT_")):
        if key in options:
            continue
        monkeypatch.setenv(key, "97")
        assert 97 in partitions_from_env().values(), f"topics: {key} is not read"
        monkeypatch.delenv(key)
    assert env["CARVEOUT_KAFKA_BOOTSTRAP"] == "kafka:9092"


def test_services_accept_the_environment_they_are_given(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Settings parse; stores are on the stack's PostgreSQL, one database each, by URL."""
    init_sql = (ROOT / "infra" / "postgres-init.sql").read_text()
    databases = {m.strip('"') for m in re.findall(r'CREATE DATABASE\s+("?\w+"?)', init_sql, re.I)}
    for name, port in SERVICES.items():
        for key in list(os.environ):
            if key.startswith("CARVEOUT_"):
                monkeypatch.delenv(key)
        for key, value in environment(services[name]).items():
            monkeypatch.setenv(key, value)
        settings: Any = service_settings(name)()
        assert settings.port == port, f"{name}: default port {settings.port}, expected {port}"
        assert settings.kafka_bootstrap == "kafka:9092"
        url = urlsplit(settings.database_url)
        assert url.scheme == "postgresql+psycopg", f"{name}: {settings.database_url}"
        assert url.hostname == "postgres"
        assert url.path.lstrip("/") == name and name in databases, f"{name}: {url.path}"
        settings.token_book()  # all three tokens given


def test_the_role_tokens_must_be_given(services: dict[str, Any]) -> None:
    for name in SERVICES:
        for token in TOKENS:
            without = {k: v for k, v in USER_ENV.items() if k != token}
            with pytest.raises(MissingVariable, match=token):
                environment(services[name], without)


def test_published_ports_are_the_default_ones(services: dict[str, Any]) -> None:
    for name, port in SERVICES.items():
        assert published_ports(services[name]) == {(port, port)}, f"{name}: {services[name]}"
        url = urlsplit(healthcheck_url(services[name]))
        assert url.port == port and url.path in ("/healthz", "/readyz"), f"{name}: {url}"
    assert (16686, 16686) in published_ports(services["jaeger"]), "the trace viewer"


def test_services_listen_on_every_interface_of_their_container(services: dict[str, Any]) -> None:
    dockerfile = (ROOT / "infra" / "Dockerfile").read_text()
    for name in SERVICES:
        variable = f"CARVEOUT_{name.upper()}_HOST"
        given = environment(services[name]).get(variable)
        assert given == "0.0.0.0" or (
            given is None and re.search(rf"\b{variable}=0\.0\.0\.0\b", dockerfile)
        ), f"{name}: {variable} must be 0.0.0.0 in the container"


def test_the_image_builds_from_the_repository_as_a_non_root_user(services: dict[str, Any]) -> None:
    build = services["grant"]["build"]
    context = ROOT / build["context"]
    lines = re.sub(r"\\\n", " ", (ROOT / build["dockerfile"]).read_text()).splitlines()
    sources: list[Path] = []
    for line in lines:
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            sources += [context / word for word in words[1:-1] if not word.startswith("--")]
    for source in sources:
        assert source.exists(), f"COPY {source.relative_to(context)}: no such path"
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"][
        "targets"
    ]["wheel"]["packages"]
    for package in packages:
        assert any((context / package).is_relative_to(s) for s in sources), f"{package} not copied"
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), "the image must not run as root"
    for name in (*SERVICES, "topics"):
        assert services[name]["build"] == build, f"{name}: one image for every Carveout container"


def test_traces_and_metrics_go_through_the_collector(services: dict[str, Any]) -> None:
    collector = services["otel-collector"]
    [(source, target)] = [m for m in bind_mounts(collector) if m[0].endswith((".yaml", ".yml"))]
    assert f"--config={target}" in collector["command"]
    config = yaml.safe_load((ROOT / source).read_text())

    protocols = config["receivers"]["otlp"]["protocols"]
    ports = {
        "grpc": int(protocols["grpc"]["endpoint"].rpartition(":")[2]),
        "http/protobuf": int(protocols["http"]["endpoint"].rpartition(":")[2]),
    }
    assert ports == {"grpc": 4317, "http/protobuf": 4318}
    assert {(4317, 4317), (4318, 4318)} <= published_ports(collector)
    # The protocol of the OTLP span exporter the services use (carveout_runtime.telemetry).
    source = inspect.getsource(importlib.import_module("carveout_runtime.telemetry"))
    protocol = "http/protobuf" if "otlp.proto.http" in source else "grpc"
    for name in SERVICES:
        env = environment(services[name])
        assert env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc") == protocol, name
        endpoint = urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
        assert (endpoint.hostname, endpoint.port) == ("otel-collector", ports[protocol]), name
        assert env["CARVEOUT_OTEL_EXPORTER"] == "otlp", name
        assert env.get("OTEL_SERVICE_NAME") == f"carveout-{name}", name

    pipelines = config["service"]["pipelines"]
    assert "otlp" in pipelines["traces"]["receivers"]
    for exporter in pipelines["traces"]["exporters"]:
        host, _, port = config["exporters"][exporter]["endpoint"].rpartition(":")
        assert host in services, f"traces go to {host}, not a container of the stack"
        assert host == "jaeger" and port == "4317"

    assert "prometheus" in pipelines["metrics"]["exporters"]
    metrics_port = int(config["exporters"]["prometheus"]["endpoint"].rpartition(":")[2])
    assert (metrics_port, metrics_port) in published_ports(collector)
    scraped = {
        (name, sd["port"])
        for job in config["receivers"]["prometheus"]["config"]["scrape_configs"]
        for sd in job.get("dns_sd_configs", [])
        for name in sd["names"]
    }
    assert scraped == set(SERVICES.items()), "every service's /metrics is scraped"

    health_port = int(config["extensions"]["health_check"]["endpoint"].rpartition(":")[2])
    assert "health_check" in config["service"]["extensions"]
    assert urlsplit(healthcheck_url(collector)).port == health_port


def _compose_command() -> list[str] | None:
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) is None:
            continue
        try:
            version = subprocess.run(
                [*command, "version", "--short"], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if version.returncode == 0 and version.stdout.strip().lstrip("v").startswith("2"):
            return command
    return None


def test_docker_compose_accepts_the_file() -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("Docker Compose v2 (docker compose plugin) is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARVEOUT_")}
    result = subprocess.run(
        [*command, "--env-file", os.devnull, "-f", str(COMPOSE_FILE), "config", "--quiet"],
        env={**env, **USER_ENV},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    missing = subprocess.run(
        [*command, "--env-file", os.devnull, "-f", str(COMPOSE_FILE), "config", "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode != 0 and "CARVEOUT_REGULATOR_TOKEN" in missing.stderr
