"""Shared fixtures for the contract tests: the golden examples and fresh payloads."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from carveout_contracts.events import CURRENT_VERSION

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden"


@pytest.fixture
def golden() -> Callable[[str], dict[str, Any]]:
    """A fresh, mutable copy of the current version's golden example, by event type."""

    def load(event_type: str) -> dict[str, Any]:
        path = GOLDEN_DIR / f"{event_type}.v{CURRENT_VERSION[event_type]}.json"
        return copy.deepcopy(json.loads(path.read_text()))

    return load


@pytest.fixture
def flat_conditions() -> list[dict[str, Any]]:
    """The six conditions of the example grant in DESIGN section 4, as flat objects."""
    return [
        {
            "id": "countries",
            "kind": "user_countries",
            "allow": ["US", "GB", "IN"],
            "severity": "critical",
        },
        {
            "id": "embargo",
            "kind": "user_countries",
            "deny": ["KP", "IR", "CU", "SY", "RU"],
            "severity": "critical",
        },
        {
            "id": "regions",
            "kind": "deployment_regions",
            "allow": ["us-east", "us-west"],
            "severity": "critical",
        },
        {
            "id": "purpose",
            "kind": "purposes",
            "allow": ["vulnerability-scanning"],
            "severity": "warning",
        },
        {
            "id": "safeguards",
            "kind": "safeguards",
            "require": ["access_logging", "mfa"],
            "severity": "critical",
        },
        {
            "id": "cap",
            "kind": "usage_cap",
            "units": 1000000,
            "window": "day",
            "severity": "warning",
        },
    ]
