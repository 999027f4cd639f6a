"""Judging one access against the grants in force when it happened. Pure: no I/O, no clock.

Grants are compiled once per version into plain checks (sets, floats), so judging an
access is a few dictionary and set look-ups.

What a violation reports is bounded (DESIGN §10, "everything published fits"): each list
in its ``expected`` or ``actual`` keeps as many of its values as fit in
:data:`LIST_BYTES` of JSON, and when it is cut says how many it left out
(``"<list>_omitted": n``). With at most 64 conditions, 200-character ids and three
lists a violation, no breach event can reach the 512 KiB a record may have, whatever the
grant and the access; a unit test builds the worst case. The cut depends only on the
values, so a replay produces the same bytes.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import orjson

from carveout_contracts import (
    Condition,
    DeploymentRegions,
    Purposes,
    Safeguards,
    UsageCap,
    UserCountries,
)

from .access import Access
from .domain import GrantPeriod, GrantView

Decision = Literal["allow", "deny"]
NoGrantReason = Literal["revoked", "suspended", "expired", "not_yet_valid", "unknown"]
UsageKey = tuple[str, str, int]
"""(grant id, ``hour`` or ``day``, start of the UTC-aligned window in epoch seconds)."""


class UsageTotals(Protocol):
    """Units used so far, by usage window: a dict, or a batch's view of one."""

    def get(self, key: UsageKey, default: int, /) -> int: ...


WINDOW_SECONDS = {"hour": 3600, "day": 86400}
BREACH_NAMESPACE = uuid.UUID("6f1c2a4e-8d3b-4e7a-9c5f-0b2d4e6f8a1c")
_REASON_PRIORITY: tuple[NoGrantReason, ...] = (
    "revoked",
    "suspended",
    "not_yet_valid",
    "expired",
)

LIST_BYTES = 1536
"""The most JSON one list in a violation's ``expected`` or ``actual`` carries.

256 two-letter countries (1,281 bytes) fit whole; 64 violations of three such lists, plus
their ids, stay under 400 KiB.
"""
_ESCAPED = 6
"""The most bytes one character can take in JSON (``\u001f``)."""


def bounded(name: str, values: Iterable[str], into: dict[str, Any] | None = None) -> dict[str, Any]:
    """``{name: values}``, the list cut to :data:`LIST_BYTES` of JSON, with
    ``name_omitted`` saying how many values were left out when it had to be cut."""
    out = {} if into is None else into
    kept = list(values)
    if sum(map(len, kept)) * _ESCAPED + 3 * len(kept) > LIST_BYTES:  # may not fit: measure
        size, fitting = 2, 0
        for value in kept:
            size += len(orjson.dumps(value)) + 1
            if size > LIST_BYTES:
                break
            fitting += 1
        if fitting < len(kept):
            out[f"{name}_omitted"] = len(kept) - fitting
            kept = kept[:fitting]
    out[name] = kept
    return out


Check = Callable[[Access], tuple[Any, Any] | None]
"""Returns ``(expected, actual)`` when the access breaks the condition, else ``None``."""


@dataclass(frozen=True, slots=True)
class CompiledCheck:
    condition_id: str
    kind: str
    severity: str
    check: Check


@dataclass(frozen=True, slots=True)
class CompiledCap:
    condition_id: str
    severity: str
    units: int
    window: str


@dataclass(frozen=True, slots=True)
class CompiledPeriod:
    version: int
    status: str
    starts: float
    valid_from: float
    valid_until: float
    checks: tuple[CompiledCheck, ...]
    caps: tuple[CompiledCap, ...]
    appended_ms: float = -math.inf
    """When the log received this version (epoch ms)."""


@dataclass(frozen=True, slots=True)
class CompiledGrant:
    grant_id: str
    grantee_id: str
    model_id: str
    version: int
    periods: tuple[CompiledPeriod, ...]
    issued_ms: float = -math.inf
    """When the log received the grant (epoch ms); it covers accesses received after."""

    def period_at(self, moment: float, appended_ms: float | None = None) -> CompiledPeriod:
        """The version in force at ``moment`` among those the log had received when it
        received the access (``appended_ms``; ``None``: every version known)."""
        received = math.inf if appended_ms is None else appended_ms
        for period in reversed(self.periods):
            if period.starts <= moment and period.appended_ms <= received:
                return period
        return self.periods[0]


def _compile_condition(condition: Condition) -> CompiledCheck | CompiledCap:
    cid, severity = condition.id, condition.severity
    if isinstance(condition, UsageCap):
        return CompiledCap(cid, severity, condition.units, condition.window)
    check: Check
    if isinstance(condition, UserCountries):
        # The expected side is bounded once, here, not per access.
        if condition.allow is not None:
            allowed, allow_list = frozenset(condition.allow), bounded("allow", condition.allow)

            def check(a: Access) -> tuple[Any, Any] | None:
                return None if a.user_country in allowed else (allow_list, a.user_country)
        else:
            denied = frozenset(condition.deny or ())
            deny_list = bounded("deny", condition.deny or ())

            def check(a: Access) -> tuple[Any, Any] | None:
                return (deny_list, a.user_country) if a.user_country in denied else None
    elif isinstance(condition, DeploymentRegions):
        regions, region_list = frozenset(condition.allow), bounded("allow", condition.allow)

        def check(a: Access) -> tuple[Any, Any] | None:
            return None if a.deployment_region in regions else (region_list, a.deployment_region)
    elif isinstance(condition, Purposes):
        purposes, purpose_list = frozenset(condition.allow), bounded("allow", condition.allow)

        def check(a: Access) -> tuple[Any, Any] | None:
            return None if a.purpose in purposes else (purpose_list, a.purpose)
    elif isinstance(condition, Safeguards):
        required = frozenset(condition.require)
        required_list = bounded("require", condition.require)

        def check(a: Access) -> tuple[Any, Any] | None:
            if required <= a.safeguards:
                return None
            actual = bounded("attested", sorted(a.safeguards))
            return required_list, bounded("missing", sorted(required - a.safeguards), actual)
    else:  # pragma: no cover - the union is closed
        raise TypeError(f"unknown condition {condition!r}")
    return CompiledCheck(cid, condition.kind, severity, check)


def _compile_period(period: GrantPeriod) -> CompiledPeriod:
    compiled = [_compile_condition(c) for c in period.conditions]
    return CompiledPeriod(
        version=period.version,
        status=period.status,
        starts=-math.inf if period.effective_at is None else period.effective_at.timestamp(),
        valid_from=period.valid_from.timestamp(),
        valid_until=period.valid_until.timestamp(),
        checks=tuple(c for c in compiled if isinstance(c, CompiledCheck)),
        caps=tuple(c for c in compiled if isinstance(c, CompiledCap)),
        appended_ms=-math.inf if period.appended_ms is None else period.appended_ms,
    )


def compile_grant(view: GrantView) -> CompiledGrant:
    return CompiledGrant(
        grant_id=view.grant_id,
        grantee_id=view.grantee_id,
        model_id=view.model_id,
        version=view.version,
        periods=tuple(_compile_period(p) for p in view.periods),
        issued_ms=-math.inf if view.issued_ms is None else view.issued_ms,
    )


@dataclass(slots=True)
class Verdict:
    decision: Decision
    violations: list[dict[str, Any]]
    grant_id: str | None
    grant_version: int | None
    usage: list[UsageKey] = field(default_factory=list)
    """The usage windows this access's units count towards (empty when no grant covers it)."""

    @property
    def severity(self) -> str | None:
        if not self.violations:
            return None
        critical = any(v["severity"] == "critical" for v in self.violations)
        return "critical" if critical else "warning"


def window_start(moment: float, window: str) -> int:
    size = WINDOW_SECONDS[window]
    return int(moment // size) * size


def usage_keys(grant_id: str, moment: float) -> list[UsageKey]:
    return [
        (grant_id, "hour", int(moment // 3600) * 3600),
        (grant_id, "day", int(moment // 86400) * 86400),
    ]


def _status(period: CompiledPeriod, moment: float) -> NoGrantReason | None:
    if period.status == "revoked":
        return "revoked"
    if period.status == "suspended":
        return "suspended"
    if moment < period.valid_from:
        return "not_yet_valid"
    if moment >= period.valid_until:
        return "expired"
    return None


def _violations(
    access: Access, grant_id: str, period: CompiledPeriod, usage: UsageTotals
) -> list[dict[str, Any]]:
    found = []
    for c in period.checks:
        broken = c.check(access)
        if broken is not None:
            found.append(
                {
                    "condition_id": c.condition_id,
                    "kind": c.kind,
                    "severity": c.severity,
                    "expected": broken[0],
                    "actual": broken[1],
                }
            )
    for cap in period.caps:
        size = WINDOW_SECONDS[cap.window]
        start = int(access.occurred_at // size) * size
        used = usage.get((grant_id, cap.window, start), 0) + access.units
        if used > cap.units:
            found.append(
                {
                    "condition_id": cap.condition_id,
                    "kind": "usage_cap",
                    "severity": cap.severity,
                    "expected": {"units": cap.units, "window": cap.window},
                    "actual": {
                        "units": used,
                        "window_start": datetime.fromtimestamp(start, UTC).isoformat(),
                    },
                }
            )
    return found


def no_active_grant(access: Access, reason: NoGrantReason) -> dict[str, Any]:
    return {
        "condition_id": "no_active_grant",
        "kind": "no_active_grant",
        "severity": "critical",
        "expected": {"grantee_id": access.grantee_id, "model_id": access.model_id},
        "actual": reason,
    }


def judge(
    access: Access,
    candidates: Sequence[CompiledGrant],
    usage: UsageTotals,
    appended_ms: float | None = None,
) -> Verdict:
    """Judge ``access`` against the grants of its grantee and model, as of its ``occurred_at``.

    ``candidates`` are in issue order. An access naming a grant is judged against that
    grant alone. Any critical violation denies; warnings alone allow, and are reported.
    With ``appended_ms`` (when the log received the access), only the grant versions the
    log received before it count: a regulator action relayed late applies to the accesses
    that reached the log after it, and a replay judges the same.
    """
    moment = access.occurred_at
    if access.grant_id is not None:
        candidates = [g for g in candidates if g.grant_id == access.grant_id]
    in_force: list[tuple[CompiledGrant, CompiledPeriod]] = []
    lapsed: list[tuple[NoGrantReason, CompiledGrant, CompiledPeriod]] = []
    for grant in candidates:
        period = grant.period_at(moment, appended_ms)
        reason = _status(period, moment)
        if reason is None:
            in_force.append((grant, period))
        else:
            lapsed.append((reason, grant, period))
    if not in_force:
        if not lapsed:
            return Verdict("deny", [no_active_grant(access, "unknown")], None, None)
        reason, grant, period = min(
            reversed(lapsed), key=lambda item: _REASON_PRIORITY.index(item[0])
        )
        return Verdict("deny", [no_active_grant(access, reason)], grant.grant_id, period.version)
    best: tuple[CompiledGrant, CompiledPeriod, list[dict[str, Any]], int] | None = None
    for grant, period in reversed(in_force):
        found = _violations(access, grant.grant_id, period, usage)
        if not found:
            best = (grant, period, found, 0)
            break
        critical = _critical(found)
        if best is None or critical < best[3]:
            best = (grant, period, found, critical)
    assert best is not None
    grant, period, found, critical = best
    decision: Decision = "deny" if critical else "allow"
    return Verdict(
        decision, found, grant.grant_id, period.version, usage_keys(grant.grant_id, moment)
    )


def _critical(violations: list[dict[str, Any]]) -> int:
    return sum(1 for v in violations if v["severity"] == "critical")


def uuid5_hex(namespace: uuid.UUID, name: str) -> str:
    """``uuid.uuid5(namespace, name).hex``, without building UUID objects (the hot path's)."""
    digest = bytearray(hashlib.sha1(namespace.bytes + name.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    return digest.hex()


def uuid5_str(namespace: uuid.UUID, name: str) -> str:
    """``str(uuid.uuid5(namespace, name))``, fast."""
    h = uuid5_hex(namespace, name)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def breach_id(access_event_id: str, grant_id: str | None, grant_version: int | None) -> str:
    """The same access and grant version always give the same breach id."""
    name = f"{access_event_id}/{grant_id or '-'}/{grant_version or 0}"
    return "brc_" + uuid5_hex(BREACH_NAMESPACE, name)
