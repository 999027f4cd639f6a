"""The enforcement fast reader turns any record into an access or a PoisonMessage.

Anything else raised would be retried as a failure instead of dead-lettered at once.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carveout_contracts import PoisonMessage
from carveout_enforcement.access import read_access

GOLDEN = Path(__file__).resolve().parents[4] / "contracts" / "golden"
ACCESS = json.loads((GOLDEN / "access.recorded.v1.json").read_text())
NOW = time.time()

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.sampled_from(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "", "\x00", "US", "KP"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)


def reads_or_is_poison(value: bytes) -> None:
    try:
        read_access(value, NOW)
    except PoisonMessage as poison:
        reason = poison.reason
    else:
        return
    assert reason in ("bad_json", "unknown_type", "unsupported_version", "invalid")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.binary(max_size=512))
def test_arbitrary_bytes(value: bytes) -> None:
    reads_or_is_poison(value)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values)
def test_arbitrary_json(value: Any) -> None:
    reads_or_is_poison(json.dumps(value).encode())


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(
    field=st.sampled_from(
        [*(k for k in ACCESS if k != "data"), *(f"data.{k}" for k in ACCESS["data"])]
    ),
    replacement=json_values,
    remove=st.booleans(),
)
def test_the_golden_access_with_a_field_mutated(field: str, replacement: Any, remove: bool) -> None:
    event = json.loads(json.dumps(ACCESS))
    target, name = (event["data"], field[5:]) if field.startswith("data.") else (event, field)
    if remove:
        target.pop(name, None)
    else:
        target[name] = replacement
    reads_or_is_poison(json.dumps(event).encode())
