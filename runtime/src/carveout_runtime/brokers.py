"""The FastStream Kafka broker a service publishes and subscribes with, and its start."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from .settings import SharedSettings

if TYPE_CHECKING:
    from faststream.kafka import KafkaBroker


class _DropKnownNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Auto create topics is disabled" not in record.getMessage()


def _faststream_logger() -> logging.Logger:
    logger = logging.getLogger("carveout.faststream")
    if not any(isinstance(f, _DropKnownNoise) for f in logger.filters):
        logger.addFilter(_DropKnownNoise())
    return logger


METADATA_MAX_AGE_MS = 3000


def kafka_broker(settings: SharedSettings, client_id: str) -> KafkaBroker:
    """The FastStream Kafka broker a service publishes and subscribes with."""
    from faststream.kafka import KafkaBroker

    from .telemetry import broker_middlewares

    return KafkaBroker(
        settings.kafka_bootstrap,
        enable_idempotence=False,  # the embedded broker (Tansu) has no idempotent producer
        acks="all",
        linger_ms=1,
        allow_auto_create_topics=False,
        # A consumer that rejoined a restarted broker before its topics were made again
        # sees them within seconds, not the default five minutes.
        metadata_max_age_ms=METADATA_MAX_AGE_MS,
        client_id=client_id,
        logger=_faststream_logger(),
        log_level=logging.DEBUG,  # per-message "Received"/"Processed" lines only when asked for
        middlewares=broker_middlewares(settings, client_id.removeprefix("carveout-")),
    )


async def start_broker(broker: KafkaBroker, bootstrap: str, deadline_s: float = 60) -> None:
    """Connect, retrying while the broker is not up yet; give up with a clear error."""
    delay = 0.2
    loop = asyncio.get_running_loop()
    give_up = loop.time() + deadline_s
    while True:
        try:
            await broker.start()
            return
        except Exception as exc:
            if loop.time() > give_up:
                raise RuntimeError(f"cannot reach the Kafka broker at {bootstrap}: {exc}") from exc
            logging.getLogger("carveout").warning(
                "Kafka broker at %s not reachable yet (%s); retrying", bootstrap, exc
            )
            with contextlib.suppress(Exception):
                await broker.stop()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
