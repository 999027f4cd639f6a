"""Trace context in Kafka headers, spans that continue it, and the tracing set-up."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import format_span_id, format_trace_id

from carveout_runtime import telemetry
from carveout_runtime.settings import SharedSettings

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
W3C = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]")


@dataclass
class Record:
    """The parts of an aiokafka ``ConsumerRecord`` the helpers read."""

    headers: Any


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Spans made by the helpers go to memory (the process's global provider is untouched)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(telemetry, "_TRACER", provider.get_tracer("test"))
    yield exporter
    provider.shutdown()


def test_the_traceparent_header_is_read_from_kafka_pairs_mappings_and_records() -> None:
    pairs = [("content-type", b"application/json"), ("traceparent", TRACEPARENT.encode())]
    assert telemetry.header(pairs) == TRACEPARENT
    assert telemetry.header({"traceparent": TRACEPARENT}) == TRACEPARENT
    assert telemetry.header(pairs, "content-type") == "application/json"
    assert telemetry.header([("content-type", b"application/json")]) is None
    assert telemetry.header(None) is None
    assert telemetry.record_traceparent(Record(headers=tuple(pairs))) == TRACEPARENT
    assert telemetry.record_traceparent(Record(headers=())) is None
    assert telemetry.record_traceparent(None) is None


def test_extract_then_inject_gives_the_same_traceparent() -> None:
    assert telemetry.inject(telemetry.extract(TRACEPARENT)) == TRACEPARENT
    pairs = [("traceparent", TRACEPARENT.encode())]
    assert telemetry.inject(telemetry.extract(pairs)) == TRACEPARENT


@pytest.mark.parametrize("bad", [None, "", "00-abc", f"00-{'0' * 32}-{PARENT_ID}-01"])
def test_a_missing_or_invalid_traceparent_gives_no_context(bad: str | None) -> None:
    assert telemetry.inject(telemetry.extract(bad)) is None


def test_with_tracing_off_published_headers_carry_the_context_they_continue() -> None:
    """No spans are made, but an event published inside ``continue_trace`` keeps the trace."""
    assert not telemetry.tracing_enabled()
    with telemetry.continue_trace("breach condition.breached", TRACEPARENT) as span:
        assert not span.is_recording()
        headers = telemetry.kafka_headers()
    assert headers == {"content-type": "application/json", "traceparent": TRACEPARENT}
    assert telemetry.kafka_headers(TRACEPARENT)["traceparent"] == TRACEPARENT
    fresh = telemetry.kafka_headers()["traceparent"]  # nothing to continue: a new trace
    assert W3C.fullmatch(fresh)
    assert fresh.split("-")[1] != TRACE_ID
    with telemetry.continue_trace("relay grant.issued", None):
        assert W3C.fullmatch(telemetry.kafka_headers()["traceparent"])
    record = Record(headers=[("traceparent", TRACEPARENT.encode())])
    assert telemetry.cause_traceparent(record) == TRACEPARENT


def test_with_tracing_on_a_span_is_a_child_of_the_context_it_continues(
    recorded: InMemorySpanExporter,
) -> None:
    breach_span = telemetry.continue_trace(
        "breach condition.breached",
        TRACEPARENT,
        attributes={"carveout.breach_id": "brc_1"},
        link_current=True,
    )
    with telemetry.continue_trace("batch", None) as batch, breach_span as span:
        published = telemetry.kafka_headers()["traceparent"]
        caused = telemetry.cause_traceparent(Record(headers=()))
    [breach, outer] = recorded.get_finished_spans()
    assert breach.name == "breach condition.breached"
    assert breach.parent is not None
    assert format_trace_id(breach.context.trace_id) == TRACE_ID
    assert format_span_id(breach.parent.span_id) == PARENT_ID
    assert breach.attributes == {"carveout.breach_id": "brc_1"}
    [link] = breach.links
    assert link.context.span_id == batch.get_span_context().span_id
    assert outer.context.trace_id != breach.context.trace_id  # the batch is a trace of its own
    own = f"00-{TRACE_ID}-{format_span_id(span.get_span_context().span_id)}-01"
    assert published == own  # what is published inside names the new span
    assert caused == own


def test_configure_tracing_writes_json_spans_to_a_file_per_service(tmp_path: Path) -> None:
    """In a process of its own: the tracer provider is process-wide."""
    script = f"""
import sys
from carveout_runtime import telemetry
from carveout_runtime.settings import SharedSettings

settings = SharedSettings(otel_exporter="console", otel_console_file=sys.argv[1])
assert telemetry.configure_tracing("grant", settings)
assert telemetry.tracing_enabled()
with telemetry.continue_trace("relay carveout.revoked", "{TRACEPARENT}"):
    pass
telemetry.flush_tracing()
"""
    pattern = str(tmp_path / "spans-{service}.jsonl")
    subprocess.run([sys.executable, "-c", script, pattern], check=True, timeout=60)
    [line] = (tmp_path / "spans-grant.jsonl").read_text().splitlines()
    span = json.loads(line)
    assert span["name"] == "relay carveout.revoked"
    assert span["context"]["trace_id"] == f"0x{TRACE_ID}"
    assert span["parent_id"] == f"0x{PARENT_ID}"
    assert span["resource"]["attributes"]["service.name"] == "carveout-grant"


def test_tracing_is_off_by_default_and_chosen_by_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert SharedSettings().otel_exporter == "none"

    def kinds(settings: SharedSettings) -> list[str]:
        return [type(m).__name__ for m in telemetry.broker_middlewares(settings, "test")]

    assert kinds(SharedSettings()) == ["KafkaPrometheusMiddleware"]  # metrics, no tracing
    monkeypatch.setenv("CARVEOUT_OTEL_EXPORTER", "otlp")
    monkeypatch.setenv("CARVEOUT_OTEL_CONSOLE_FILE", "var/spans-{service}.jsonl")
    settings = SharedSettings()
    assert settings.otel_exporter == "otlp"
    assert settings.otel_console_file == "var/spans-{service}.jsonl"
    assert kinds(settings) == ["KafkaPrometheusMiddleware", "KafkaTelemetryMiddleware"]
    monkeypatch.setenv("CARVEOUT_OTEL_EXPORTER", "jaeger")
    with pytest.raises(ValueError, match=r"otel_exporter|CARVEOUT_OTEL_EXPORTER"):
        SharedSettings()


@dataclass(frozen=True)
class TopicPartition:
    topic: str
    partition: int


@dataclass
class FakeConsumer:
    """What the lag measurement asks of an aiokafka consumer."""

    positions: dict[TopicPartition, int]
    ends: dict[TopicPartition, int]

    def assignment(self) -> set[TopicPartition]:
        return set(self.positions)

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.ends[tp] for tp in tps}

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]


@dataclass
class FakeSubscriber:
    consumer: Any


def lag_samples(service: str) -> dict[tuple[str, str], float]:
    return {
        (s.labels["topic"], s.labels["partition"]): s.value
        for metric in telemetry.CONSUMER_LAG.collect()
        for s in metric.samples
        if s.labels["service"] == service
    }


async def test_consumer_lag_is_measured_per_partition_and_forgets_partitions_let_go() -> None:
    a0, a1, g0 = TopicPartition("acc", 0), TopicPartition("acc", 1), TopicPartition("grt", 0)
    access = FakeConsumer({a0: 10, a1: 7}, {a0: 15, a1: 5})  # past the end counts as 0
    grants = FakeConsumer({g0: 3}, {g0: 3})
    subscribers = [FakeSubscriber(access), FakeSubscriber(grants), FakeSubscriber(None)]
    await telemetry.observe_lag("lag-test", subscribers)
    assert lag_samples("lag-test") == {("acc", "0"): 5, ("acc", "1"): 0, ("grt", "0"): 0}
    del access.positions[a1]  # a rebalance took partition 1 away
    await telemetry.observe_lag("lag-test", subscribers)
    assert lag_samples("lag-test") == {("acc", "0"): 5, ("grt", "0"): 0}
