"""``carveout topics create``: the command group (:data:`app`, that cli.py adds)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from .output import console

app = typer.Typer(help="Kafka topics.", no_args_is_help=True)


@app.command("create")
def topics_create(
    bootstrap: Annotated[str, typer.Option(envvar="CARVEOUT_KAFKA_BOOTSTRAP")] = "127.0.0.1:9092",
) -> None:
    """Create the Carveout topics that are missing (partitions from CARVEOUT_PARTITIONS*)."""
    from .broker import ensure_topics, partitions_from_env, wait_for_broker

    async def go() -> list[str]:
        await wait_for_broker(bootstrap)
        return await ensure_topics(bootstrap, partitions_from_env())

    created = asyncio.run(go())
    console.print(f"created: {', '.join(created) or 'nothing (all topics exist)'}")
