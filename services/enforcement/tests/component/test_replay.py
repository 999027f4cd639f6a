"""Rebuilding the enforcement store from a real broker's log (``carveout_enforcement.replay``).

The log gets a grant, a few thousand accesses (some breaching, some delivered twice, one
that is not JSON, one of a grantee without a grant, one appended before the grant was
issued). The live handlers (the grant ``EventHandler`` and the ``AccessPipeline``) fold
the same records, in other batches, into store A; ``replay`` rebuilds store B. Their
digests must match, and the replay must publish nothing.

The broker is shared with other tests: whatever they left on the topics is in both
stores alike, and the replay's counts are compared with a replay taken before this
module published anything.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from carveout_contracts import codec, topics
from carveout_enforcement import replay as enforcement_replay
from carveout_enforcement.decision_log import DecisionLeaves, DecisionLog
from carveout_enforcement.freshness import WholeLogRead
from carveout_enforcement.handlers.access import AccessPipeline, PipelineSettings
from carveout_enforcement.handlers.grants import GrantIndex, GrantProjector
from carveout_enforcement.outbox import BreachOutbox
from carveout_enforcement.store import BreachRecord, DecisionRecord, EnforcementStore
from carveout_ops.broker import ensure_topics
from carveout_ops.load import AccessTemplate, publish, scanning_traffic
from carveout_runtime.consumers import EventHandler
from carveout_runtime.logread import by_append_time, log_ends, read_all, read_topics
from carveout_runtime.replay import NotAFreshStore, ReplayReport
from carveout_runtime.stores import make_engine
from carveout_runtime.tlog import TransparencyLogs

pytestmark = pytest.mark.broker

DEMO = Path(__file__).resolve().parents[4] / "examples" / "demo-grant.json"
SUFFIX = uuid.uuid4().hex[:10]
GRANTEE = f"org-replay-{SUFFIX}"
GRANT_ID = f"grt_replay_{SUFFIX}"
START = datetime(2026, 7, 1, tzinfo=UTC)  # inside the demo grant's validity
OLD, NEW, REPEATS = 300, 2500, 20


def grant_issued() -> dict[str, Any]:
    body = json.loads(DEMO.read_text())
    body["grantee"]["id"] = GRANTEE
    return {
        "event_id": str(uuid.uuid4()),
        "type": "grant.issued",
        "version": 1,
        "occurred_at": "2026-06-28T00:00:00Z",
        "producer": "grant",
        "key": GRANT_ID,
        "data": {**body, "grant_id": GRANT_ID, "issued_by": "regulator"},
    }


async def produce(bootstrap: str, topic: str, values: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for value, key in values:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


def breaching(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every 10th access from an embargoed country, every 17th in a region not allowed."""
    for n, event in enumerate(events):
        if n % 10 == 0:
            event["data"]["user_country"] = "KP"
        if n % 17 == 0:
            event["data"]["deployment_region"] = "eu-west"
    return events


@dataclass
class Log:
    """What this module put on the log, and a replay of what was there before."""

    bootstrap: str
    before: ReplayReport
    early: dict[str, Any]
    old: list[dict[str, Any]]
    new: list[dict[str, Any]]
    stranger: dict[str, Any]
    new_ids: set[str] = field(default_factory=set)

    @property
    def breaching_new(self) -> set[str]:
        return {
            e["event_id"]
            for e in self.new
            if e["data"]["user_country"] == "KP" or e["data"]["deployment_region"] == "eu-west"
        }


@pytest.fixture(scope="module")
async def log(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Log:
    bootstrap = kafka_bootstrap
    await ensure_topics(bootstrap)
    baseline = tmp_path_factory.mktemp("baseline") / "enforcement.db"
    before = await enforcement_replay.replay(
        bootstrap=bootstrap, database_url=f"sqlite:///{baseline}"
    )

    template = AccessTemplate(grantee_id=GRANTEE, gateway_id="gw-replay")
    # Appended before the grant is issued, though it happened inside the grant's validity.
    early = template.event(START + timedelta(hours=1))
    await publish(bootstrap, iter([early]))
    issued = grant_issued()
    await produce(bootstrap, topics.GRANTS, [(orjson.dumps(issued), GRANT_ID.encode())])
    old = breaching(list(scanning_traffic(template, OLD, START, timedelta(hours=6))))
    await publish(bootstrap, iter(old))
    new = breaching(
        list(scanning_traffic(template, NEW, START + timedelta(days=1), timedelta(days=1)))
    )
    stranger = AccessTemplate(grantee_id=f"org-nobody-{SUFFIX}").event(START)
    repeats = random.Random(5).sample(new, REPEATS)
    await publish(bootstrap, iter([*new[:1000], stranger, *repeats, *new[1000:], *repeats[:5]]))
    await produce(bootstrap, topics.ACCESS, [(b"{not json", GRANTEE.encode())])
    return Log(
        bootstrap,
        before,
        early,
        old,
        new,
        stranger,
        new_ids={e["event_id"] for e in new} | {stranger["event_id"]},
    )


@dataclass
class Live:
    store: EnforcementStore
    published: list[tuple[bytes, str, bytes]] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)

    async def publish(self, value: bytes, topic: str, key: bytes, traceparent: str | None) -> None:
        self.published.append((value, topic, key))

    async def dead_letter(self, *args: Any) -> None:
        self.dead.append(str(args[1]))  # the reason, for records and for grant events


async def run_live(bootstrap: str, database_url: str) -> Live:
    """The live service's handlers over the whole log, accesses in batches of all sizes."""
    store = EnforcementStore(make_engine(database_url))
    live = Live(store)
    index = GrantIndex([])
    projector = GrantProjector(store, index, retry_attempts=1)
    grants = EventHandler(
        topics.GRANTS,
        is_processed=store.is_processed,
        process=projector,
        dead_letter=live.dead_letter,
        retry_attempts=1,
    )
    for record in by_append_time(await read_all(bootstrap, [topics.GRANTS])):
        await grants.handle(record.value, record)
    pipeline = AccessPipeline(
        store,
        index,
        WholeLogRead(),
        store.load_usage(0),
        breaches=BreachOutbox(store, live.publish, retry_attempts=1),
        set_aside=live.dead_letter,
        settings=PipelineSettings(retry_attempts=1),
        decision_log=DecisionLog(TransparencyLogs(DecisionLeaves(store.engine))),
    )
    sizes = random.Random(11)
    async for batch in read_topics(bootstrap, [topics.ACCESS], batch_records=997):
        while batch:
            cut = sizes.randint(1, 400)
            await pipeline.process(batch[:cut])
            batch = batch[cut:]
    return live


def decisions(store: EnforcementStore, grantee_id: str | None = None) -> list[DecisionRecord]:
    page = store.page(DecisionRecord, grantee_id=grantee_id, limit=100_000)
    return list(page.items)


def grown(after: dict[str, int], before: dict[str, int], topic: str) -> int:
    return after.get(topic, 0) - before.get(topic, 0)


async def all_ends(bootstrap: str) -> dict[Any, int]:
    return await log_ends(bootstrap, topics.ALL_TOPICS)


@pytest.fixture(scope="module")
async def live(log: Log, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Live]:
    """Store A: the live handlers over the log as this module left it."""
    path = tmp_path_factory.mktemp("live") / "enforcement.db"
    made = await run_live(log.bootstrap, f"sqlite:///{path}")
    yield made
    made.store.engine.dispose()


@pytest.fixture
def stores(tmp_path: Path) -> dict[str, str]:
    return {name: f"sqlite:///{tmp_path}/{name}.db" for name in ("rebuilt", "recent")}


async def test_replay_rebuilds_the_live_store_and_publishes_nothing(
    log: Log, live: Live, stores: dict[str, str]
) -> None:
    ends = await all_ends(log.bootstrap)

    report = await enforcement_replay.replay(
        bootstrap=log.bootstrap, database_url=stores["rebuilt"]
    )

    assert await all_ends(log.bootstrap) == ends  # nothing published, nothing dead-lettered
    assert report.digest == enforcement_replay.digest(str(live.store.engine.url))
    assert report.digest == enforcement_replay.digest(stores["rebuilt"])

    # The counts, beyond what was on the log before this module.
    mine = 1 + OLD + NEW + 1 + REPEATS + 5 + 1
    assert grown(report.records, log.before.records, topics.ACCESS) == mine
    assert grown(report.records, log.before.records, topics.GRANTS) == 1
    assert report.poison - log.before.poison == 1
    assert report.skipped - log.before.skipped == REPEATS + 5
    before_rows = log.before.digest["tables"]
    rows = report.digest["tables"]
    assert rows["decisions"]["rows"] - before_rows["decisions"]["rows"] == 1 + OLD + NEW + 1
    assert rows["grant_views"]["rows"] - before_rows["grant_views"]["rows"] == 1

    # What the store says: the late grant did not cover the early access; breaches found.
    rebuilt = EnforcementStore(make_engine(stores["rebuilt"]))
    try:
        judged = {d.access_event_id: d for d in decisions(rebuilt, GRANTEE)}
        assert len(judged) == 1 + OLD + NEW
        early = judged[log.early["event_id"]]
        assert early.decision == "deny"
        assert [(v["kind"], v["actual"]) for v in json.loads(early.violations)] == [
            ("no_active_grant", "unknown")
        ]
        denied_new = {e["event_id"] for e in log.new if judged[e["event_id"]].decision == "deny"}
        assert denied_new == log.breaching_new
        assert all(judged[e["event_id"]].grant_id == GRANT_ID for e in log.old + log.new)
        assert decisions(rebuilt, log.stranger["data"]["grantee_id"])[0].decision == "deny"

        # The breaches are the ones the live pipeline published, all marked published.
        assert rebuilt.unpublished_breaches() == []
        live_breaches = {
            codec.decode(topics.BREACHES, value).data.breach_id for value, _, _ in live.published
        }
        stored = rebuilt.page(BreachRecord, limit=100_000)
        assert {b.breach_id for b in stored.items} == live_breaches
        own = {b.access_event_id: b for b in stored.items if b.grantee_id == GRANTEE}
        assert set(own) == {log.early["event_id"]} | {
            e["event_id"] for e in log.old + log.new if judged[e["event_id"]].violations != "[]"
        }
        assert own[log.early["event_id"]].grant_id is None
        assert "bad_json" in live.dead
    finally:
        rebuilt.engine.dispose()

    # A replay refuses a store that has data already.
    with pytest.raises(NotAFreshStore, match="'grant_views'"):
        await enforcement_replay.replay(bootstrap=log.bootstrap, database_url=stores["rebuilt"])
    assert await all_ends(log.bootstrap) == ends


async def test_since_skips_the_accesses_appended_before(
    log: Log, live: Live, stores: dict[str, str]
) -> None:
    records = await read_all(log.bootstrap, [topics.ACCESS])
    by_id: dict[str, Any] = {}
    for record in records:
        try:
            by_id.setdefault(json.loads(record.value)["event_id"], record)
        except ValueError:
            continue
    first_new = min(by_id[i].timestamp for i in log.new_ids)
    older = [log.early, *log.old]
    assert max(by_id[e["event_id"]].timestamp for e in older) < first_new
    since = datetime.fromtimestamp(first_new / 1000, UTC)

    report = await enforcement_replay.replay(
        bootstrap=log.bootstrap, database_url=stores["recent"], since=since
    )

    appended_before = sum(1 for r in records if r.timestamp < first_new)
    assert appended_before >= 1 + OLD
    assert report.skipped == appended_before + REPEATS + 5
    recent = EnforcementStore(make_engine(stores["recent"]))
    try:
        judged = {d.access_event_id: d for d in decisions(recent)}
        assert set(judged) == log.new_ids
        everything = {d.access_event_id: d for d in decisions(live.store)}
        for event_id, decision in judged.items():
            same = everything[event_id]
            assert (decision.decision, decision.grant_id, decision.violations) == (
                same.decision,
                same.grant_id,
                same.violations,
            )
    finally:
        recent.engine.dispose()
