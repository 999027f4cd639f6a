"""A service's event API, documented: its AsyncAPI schema served next to its OpenAPI one.

FastStream describes the broker's subscribers and publishers (channels, operations).
Carveout handlers take raw bytes and decode them with the codec, so FastStream cannot
see what a topic carries; every channel on a Carveout topic is given that topic's event
messages here instead, each documented by its event class (docstring and JSON Schema).
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic.json_schema import models_json_schema

from carveout_contracts import topics
from carveout_contracts.codec import CONTENT_TYPE
from carveout_contracts.events import EVENT_CLASSES, Envelope, event_type

if TYPE_CHECKING:
    from faststream.kafka import KafkaBroker

ASYNCAPI_PATH = "/docs/asyncapi"

TOPIC_DESCRIPTIONS: dict[str, str] = {
    topics.GRANTS: "Grant events, keyed by grant id: every regulator action and every "
    "breach-policy decision, in order per grant.",
    topics.ACCESS: "Access events from model gateways, keyed by grantee id.",
    topics.BREACHES: "Breaches found by enforcement, keyed by grant id (grantee id when no "
    "grant matched).",
    topics.NOTIFICATIONS: "Outcomes of notifications, keyed by subscription id.",
    topics.DEADLETTER: "Messages a consumer could not process, with the reason and the "
    "original bytes, keyed by source topic; and the record of each re-drive.",
    topics.CHECKPOINTS: "Signed checkpoints of the transparency logs (each decision log, the "
    "grant history), keyed by the log's origin, at least every second while a log grows.",
}

_HEADERS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "content-type": {"type": "string", "const": CONTENT_TYPE},
        "traceparent": {
            "type": "string",
            "description": "W3C trace context, followed by every service the event reaches.",
        },
    },
}

_PAGE = """<!DOCTYPE html>
<html>
  <head>
    <meta charset="utf-8">
    <title>{title} - AsyncAPI</title>
    <link rel="stylesheet" href="{css}">
  </head>
  <body>
    <div id="asyncapi"></div>
    <noscript>This page needs JavaScript from a CDN; the schema itself is at
      <a href="{path}.json">{path}.json</a> and <a href="{path}.yaml">{path}.yaml</a>.</noscript>
    <script src="{js}"></script>
    <script>
      AsyncApiStandalone.render(
        {{schema: {schema}, config: {{show: {{sidebar: true}}}}}},
        document.getElementById("asyncapi")
      );
    </script>
  </body>
</html>
"""


def _pointer(name: str) -> str:
    """``name`` escaped for use in a JSON pointer (``$ref``)."""
    return name.replace("~", "~0").replace("/", "~1")


def _summary(cls: type[Envelope]) -> str:
    """The first paragraph of the event's docstring, on one line."""
    return " ".join(_description(cls).split("\n\n")[0].split())


def _description(cls: type[Envelope]) -> str:
    return inspect.cleandoc(cls.__doc__ or event_type(cls))


def _event_components() -> tuple[dict[str, Any], dict[str, Any]]:
    """``(messages, schemas)``: one AsyncAPI message per event type, and their JSON Schemas."""
    _, definitions = models_json_schema(
        [(cls, "validation") for cls in EVENT_CLASSES],
        ref_template="#/components/schemas/{model}",
    )
    schemas: dict[str, Any] = definitions.get("$defs", {})
    messages: dict[str, Any] = {}
    for cls in EVENT_CLASSES:
        name = event_type(cls)
        messages[name] = {
            "name": name,
            "title": cls.__name__,
            "summary": _summary(cls),
            "description": _description(cls),
            "contentType": CONTENT_TYPE,
            "headers": _HEADERS_SCHEMA,
            "payload": {"$ref": f"#/components/schemas/{_pointer(cls.__name__)}"},
            "bindings": {
                "kafka": {
                    "key": {"type": "string", "description": "The envelope's key."},
                    "bindingVersion": "0.5.0",
                }
            },
        }
    return messages, schemas


def describe_events(document: dict[str, Any]) -> dict[str, Any]:
    """Give every channel on a Carveout topic the messages of the events that topic carries.

    The placeholder messages and payload schemas FastStream derived from the handlers'
    signatures (raw bytes) are dropped. Returns ``document``, changed in place.
    """
    components = document.setdefault("components", {})
    messages = components.setdefault("messages", {})
    schemas = components.setdefault("schemas", {})
    event_messages, event_schemas = _event_components()
    by_topic: dict[str, list[str]] = {}
    for cls in EVENT_CLASSES:
        by_topic.setdefault(cls.TOPIC, []).append(event_type(cls))
    used: set[str] = set()
    replaced: dict[str, list[str]] = {}  # channel $ref -> its event types
    for name, channel in document.get("channels", {}).items():
        types = by_topic.get(channel.get("address", ""))
        if not types:
            continue
        for ref in channel.get("messages", {}).values():
            placeholder = messages.pop(ref["$ref"].rsplit("/", 1)[-1], {})
            payload = placeholder.get("payload", {}).get("$ref", "")
            schemas.pop(payload.rsplit("/", 1)[-1], None)
        channel["messages"] = {t: {"$ref": f"#/components/messages/{_pointer(t)}"} for t in types}
        if not channel.get("description"):
            channel["description"] = TOPIC_DESCRIPTIONS.get(channel["address"])
        replaced[f"#/channels/{_pointer(name)}"] = types
        used.update(types)
    for operation in document.get("operations", {}).values():
        channel_ref = operation.get("channel", {}).get("$ref")
        if channel_ref in replaced:
            operation["messages"] = [
                {"$ref": f"{channel_ref}/messages/{_pointer(t)}"} for t in replaced[channel_ref]
            ]
    chosen = {t: event_messages[t] for t in sorted(used)}
    messages.update(chosen)
    schemas.update(_reachable(list(chosen.values()), event_schemas))
    return document


def _reachable(roots: list[Any], definitions: dict[str, Any]) -> dict[str, Any]:
    """The ``definitions`` that ``roots`` refer to, directly or not."""
    found: dict[str, Any] = {}
    todo = list(roots)
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
                name = ref.rsplit("/", 1)[-1].replace("~1", "/").replace("~0", "~")
                if name in definitions and name not in found:
                    found[name] = definitions[name]
                    todo.append(definitions[name])
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
    return dict(sorted(found.items()))


def asyncapi_document(
    broker: KafkaBroker, *, title: str, description: str | None, version: str = "1"
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of a service's broker, with Carveout's events in it."""
    from faststream.specification import AsyncAPI

    specification = AsyncAPI(
        broker,
        title=title,
        version=version,
        description=description,
        schema_version="3.0.0",
    ).to_specification()
    document: dict[str, Any] = json.loads(specification.to_json())
    return describe_events(document)


def asyncapi_html(document: dict[str, Any], title: str, path: str = ASYNCAPI_PATH) -> str:
    """A page rendering ``document`` with the AsyncAPI web component (loaded from a CDN)."""
    from faststream.specification.asyncapi.site import (
        ASYNCAPI_CSS_DEFAULT_URL,
        ASYNCAPI_JS_DEFAULT_URL,
    )

    schema = json.dumps(document).replace("</", "<\\/")  # never closes the <script> early
    return _PAGE.format(
        title=title,
        css=ASYNCAPI_CSS_DEFAULT_URL,
        js=ASYNCAPI_JS_DEFAULT_URL,
        path=path,
        schema=schema,
    )


def _yaml(document: dict[str, Any]) -> str:
    try:
        yaml = importlib.import_module("yaml")
    except ImportError:  # a JSON document is a YAML document too
        return json.dumps(document, indent=2)
    return str(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))


def install_asyncapi(
    app: FastAPI,
    broker: KafkaBroker,
    *,
    produces: Iterable[str] = (),
    title: str | None = None,
    description: str | None = None,
) -> None:
    """Serve the service's AsyncAPI document at ``/docs/asyncapi`` (HTML page), and the raw
    schema at ``/docs/asyncapi.json`` and ``/docs/asyncapi.yaml`` (these work offline).

    ``produces`` names the topics the service publishes to: each gets a documented
    publisher on ``broker``, so what the service sends is in the document as well as
    what it receives. The document is built on first request, once every subscriber of
    the service is registered.
    """
    for topic in produces:
        broker.publisher(topic, description=TOPIC_DESCRIPTIONS.get(topic))
    name = title or app.title
    about = description if description is not None else app.description
    cached: dict[str, Any] = {}

    def document() -> dict[str, Any]:
        if not cached:
            cached.update(
                asyncapi_document(broker, title=name, description=about, version=app.version)
            )
        return cached

    @app.get(ASYNCAPI_PATH, include_in_schema=False)
    async def asyncapi_page() -> HTMLResponse:
        return HTMLResponse(asyncapi_html(document(), name))

    @app.get(f"{ASYNCAPI_PATH}.json", include_in_schema=False)
    async def asyncapi_json() -> JSONResponse:
        return JSONResponse(document())

    @app.get(f"{ASYNCAPI_PATH}.yaml", include_in_schema=False)
    async def asyncapi_yaml() -> Response:
        return Response(_yaml(document()), media_type="application/yaml")
