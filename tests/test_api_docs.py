"""Every service documents its HTTP API at /docs and its event API at /docs/asyncapi."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka import KafkaBroker
from httpx import ASGITransport, AsyncClient

from carveout_contracts import topics
from carveout_contracts.events import EVENT_BY_TYPE

# (service, topics it receives, topics it sends to)
SERVICES = [
    (
        "grant",
        {topics.BREACHES, topics.ACKS},
        {topics.GRANTS, topics.CHECKPOINTS, topics.DEADLETTER},
    ),
    (
        "enforcement",
        {topics.GRANTS, topics.ACCESS},
        {topics.BREACHES, topics.ACKS, topics.CHECKPOINTS, topics.DEADLETTER},
    ),
    (
        "notification",
        {topics.GRANTS, topics.BREACHES},
        {topics.NOTIFICATIONS, topics.DEADLETTER},
    ),
]


def _app(service: str, tmp_path: Path) -> Any:
    module = importlib.import_module(f"carveout_{service}.app")
    settings_module = importlib.import_module(f"carveout_{service}.settings")
    settings_class = getattr(settings_module, f"{service.capitalize()}Settings")
    settings = settings_class(
        database_url=f"sqlite:///{tmp_path}/{service}.db",
        regulator_token="r",
        gateway_token="g",
        auditor_token="a",
        kafka_bootstrap="localhost:1",
    )
    return module.create_app(settings, KafkaBroker("localhost:1"))


def _deref(document: dict[str, Any], ref: str) -> Any:
    """The node a local ``$ref`` points at, following references to references."""
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return _deref(document, node["$ref"]) if "$ref" in node else node


@pytest.mark.parametrize(("service", "receives", "sends"), SERVICES, ids=[s[0] for s in SERVICES])
async def test_asyncapi_lists_channels_and_documented_events(
    service: str, receives: set[str], sends: set[str], tmp_path: Path
) -> None:
    app = _app(service, tmp_path)
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://svc") as client:
        answer = await client.get("/docs/asyncapi.json")
        assert answer.status_code == 200
        document = answer.json()
        assert document["asyncapi"] == "3.0.0"
        assert document["info"]["title"] == app.title

        actions: dict[str, set[str]] = {"receive": set(), "send": set()}
        for operation in document["operations"].values():
            channel = _deref(document, operation["channel"]["$ref"])
            actions[operation["action"]].add(channel["address"])
            expected = {t for t, cls in EVENT_BY_TYPE.items() if channel["address"] == cls.TOPIC}
            messages = [_deref(document, m["$ref"]) for m in operation["messages"]]
            assert {m["name"] for m in messages} == expected
            for message in messages:
                cls = EVENT_BY_TYPE[message["name"]]
                assert message["description"] == inspect.cleandoc(cls.__doc__ or "")
                payload = _deref(document, message["payload"]["$ref"])
                assert payload["properties"]["type"]["const"] == message["name"]
        assert actions == {"receive": receives, "send": sends}

        page = await client.get("/docs/asyncapi")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "AsyncApiStandalone.render" in page.text
        assert "/docs/asyncapi.json" in page.text  # the offline fallback is linked

        yaml = await client.get("/docs/asyncapi.yaml")
        assert yaml.status_code == 200
        assert "carveout." in yaml.text

        assert (await client.get("/docs")).status_code == 200
        openapi = (await client.get("/openapi.json")).json()
        assert not [path for path in openapi["paths"] if path.startswith("/docs")]
