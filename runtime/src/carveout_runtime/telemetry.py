"""Tracing and the metrics every service shares.

Traces are OpenTelemetry's. The context travels between services in each Kafka record's
W3C ``traceparent`` header, so one access can be followed to its breach, the policy's
revocation and the notification of it. ``CARVEOUT_OTEL_EXPORTER`` picks where spans go:
``none`` (the default: no spans are made, the hot paths pay nothing, and the headers
still carry the context they were given), ``console`` (JSON lines on stdout, or in
``CARVEOUT_OTEL_CONSOLE_FILE``) or ``otlp`` (the standard ``OTEL_EXPORTER_OTLP_*``
variables say where).

Metrics are Prometheus', named ``carveout_*``, served by ``GET /metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import Gauge

from carveout_contracts import codec

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.util.types import Attributes

Exporter = Literal["none", "console", "otlp"]
TRACEPARENT = "traceparent"

CONSUMER_LAG = Gauge(
    "carveout_consumer_lag",
    "Records between a consumer's position and the end of its partition (at the last scrape).",
    ["service", "topic", "partition"],
)

log = logging.getLogger("carveout.telemetry")
_PROPAGATOR = TraceContextTextMapPropagator()
_TRACER = trace.get_tracer("carveout")
_provider: TracerProvider | None = None


# ----------------------------------------------------------------------------- set-up


def configure_tracing(service: str, settings: Any) -> bool:
    """Install the process's tracer provider as ``settings.otel_exporter`` says.

    Returns whether spans are recorded. One provider per process: a second call (several
    services in one test process) keeps the first.
    """
    global _provider
    exporter_name: Exporter = getattr(settings, "otel_exporter", "none")
    if exporter_name == "none" or _provider is not None:
        return _provider is not None
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: f"carveout-{service}"}))
    exporter: SpanExporter
    if exporter_name == "console":
        target = getattr(settings, "otel_console_file", None)
        out: Any = sys.stdout
        if target:
            path = Path(str(target).format(service=service))
            path.parent.mkdir(parents=True, exist_ok=True)
            out = path.open("a", encoding="utf-8")
        exporter = ConsoleSpanExporter(out=out, formatter=_json_line)
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _provider = provider
    return True


def _json_line(span: ReadableSpan) -> str:
    """One span as one line of JSON (OpenTelemetry's own JSON form)."""
    try:
        return str(span.to_json(indent=None)) + os.linesep
    except TypeError:  # a bytes attribute (FastStream's Kafka message key): as text, then
        clone = copy.copy(span)
        clone._attributes = {
            name: value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            for name, value in (span.attributes or {}).items()
        }
        return str(clone.to_json(indent=None)) + os.linesep


def tracing_enabled() -> bool:
    """Whether this process records spans (``configure_tracing`` installed a provider)."""
    return _provider is not None


def flush_tracing() -> None:
    """Export the spans still buffered (a service stopping calls this)."""
    if _provider is not None:
        _provider.force_flush(5000)


KAFKA_METRICS_PREFIX = "carveout_kafka"
"""FastStream's Kafka metrics: ``carveout_kafka_received_messages_total{app_name,handler}``,
``..._received_processed_messages_total{status}``, ``..._published_messages_total`` and
their durations, labelled with the service as ``app_name``."""


def broker_middlewares(settings: Any, service: str) -> tuple[Any, ...]:
    """FastStream's Prometheus middleware (records received, processed and published, with
    durations: the Kafka handler metrics, kept by FastStream rather than by hand), and its
    telemetry middleware when tracing is on: a span per publish and per consumed record (per
    batch, linked to its records, for batch subscribers)."""
    from faststream.kafka.prometheus import KafkaPrometheusMiddleware
    from prometheus_client import REGISTRY

    metrics = KafkaPrometheusMiddleware(
        registry=REGISTRY, app_name=service, metrics_prefix=KAFKA_METRICS_PREFIX
    )
    if getattr(settings, "otel_exporter", "none") == "none":
        return (metrics,)
    from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware

    return (metrics, KafkaTelemetryMiddleware())


def instrument_http(app: Any) -> None:
    """A server span per HTTP request (continuing the caller's ``traceparent``) when tracing
    is on; the operator endpoints are left out."""
    if not tracing_enabled():
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        excluded_urls="/healthz$,/readyz$,/metrics$",
        exclude_spans=["receive", "send"],
    )


# ----------------------------------------------------------------------------- context


def header(headers: Any, name: str = TRACEPARENT) -> str | None:
    """One header's text from Kafka record headers (``(name, bytes)`` pairs) or a mapping."""
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for key, value in pairs:
        if key == name:
            if value is None:
                return None
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return None


def record_traceparent(record: Any) -> str | None:
    """The ``traceparent`` header of a Kafka record (``None`` without one)."""
    return header(getattr(record, "headers", None)) if record is not None else None


def cause_traceparent(record: Any) -> str | None:
    """The context that work caused by ``record`` continues: the span processing it when
    tracing is on, else the record's own ``traceparent``."""
    return inject() or record_traceparent(record)


def extract(source: str | Mapping[str, Any] | Sequence[Any] | None) -> Context:
    """The trace context in a ``traceparent`` value or in Kafka headers (empty if none)."""
    if source is None:
        return Context()
    value = source if isinstance(source, str) else header(source)
    if not value:
        return Context()
    return _PROPAGATOR.extract({TRACEPARENT: value})


def inject(context: Context | None = None) -> str | None:
    """The ``traceparent`` naming the span of ``context`` (the current one by default)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=context)
    return carrier.get(TRACEPARENT)


def kafka_headers(traceparent: str | None = None) -> dict[str, str]:
    """The headers of an event published now: ``content-type`` and a ``traceparent`` naming
    the current span, else ``traceparent``, else a new trace."""
    return dict(codec.text_headers(inject() or traceparent))


@contextlib.contextmanager
def continue_trace(
    name: str,
    traceparent: str | None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Attributes = None,
    link_current: bool = False,
) -> Iterator[Span]:
    """A span continuing the trace named by ``traceparent`` (a new one without), made current.

    When tracing is off the "span" records nothing, but it carries the given context, so
    what is published inside it (:func:`kafka_headers`) keeps the trace going.
    ``link_current`` links the span that was current (a batch, say) to the new one.
    """
    links = None
    if link_current:
        around = trace.get_current_span().get_span_context()
        links = [Link(around)] if around.is_valid else None
    with _TRACER.start_as_current_span(
        name, context=extract(traceparent), kind=kind, attributes=attributes, links=links
    ) as span:
        yield span


def traced(
    name: str,
    traceparent: str | None,
    attributes: Callable[[], Attributes] | None = None,
    *,
    link_current: bool = False,
) -> contextlib.AbstractContextManager[Any]:
    """:func:`continue_trace` when tracing is on, and nothing at all when it is off: for hot
    paths that pass ``traceparent`` on themselves (``attributes`` is called only if needed)."""
    if _provider is None:
        return contextlib.nullcontext()
    return continue_trace(
        name,
        traceparent,
        attributes=attributes() if attributes else None,
        link_current=link_current,
    )


# ----------------------------------------------------------------------------- metrics


async def observe_lag(service: str, subscribers: Sequence[Any], within_s: float = 2.0) -> None:
    """Set ``carveout_consumer_lag`` for every partition the subscribers' consumers hold."""
    from .kafka import partition_lags

    held: set[tuple[str, str, str]] = set()
    for subscriber in subscribers:
        try:
            lags = await asyncio.wait_for(
                partition_lags(getattr(subscriber, "consumer", None)), within_s
            )
        except Exception as exc:  # a scrape must answer even when the broker does not
            log.debug("consumer lag unknown: %s", exc)
            continue
        for (topic, partition), lag in (lags or {}).items():
            labels = (service, topic, str(partition))
            CONSUMER_LAG.labels(*labels).set(lag)
            held.add(labels)
    for labels in _LAG_LABELS.get(service, set()) - held:  # partitions no longer held
        with contextlib.suppress(KeyError):
            CONSUMER_LAG.remove(*labels)
    _LAG_LABELS[service] = held


_LAG_LABELS: dict[str, set[tuple[str, str, str]]] = {}
