"""The grant service's settings: its own fields and the shared ``CARVEOUT_*`` ones."""

from __future__ import annotations

from typing import Any

import pytest

from carveout_grant.settings import GrantSettings

SHARED_ENV = (
    "CARVEOUT_KAFKA_BOOTSTRAP",
    "CARVEOUT_REGULATOR_TOKEN",
    "CARVEOUT_GATEWAY_TOKEN",
    "CARVEOUT_AUDITOR_TOKEN",
    "CARVEOUT_TOKENS_FILE",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SHARED_ENV:
        monkeypatch.delenv(name, raising=False)


def test_shared_settings_come_from_carveout_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARVEOUT_KAFKA_BOOTSTRAP", "kafka:9999")
    monkeypatch.setenv("CARVEOUT_GRANT_DATABASE_URL", "sqlite:///elsewhere.db")
    settings = GrantSettings()
    assert settings.kafka_bootstrap == "kafka:9999"
    assert settings.database_url == "sqlite:///elsewhere.db"


def test_tokens_given_by_variable_name_make_a_token_book() -> None:
    by_variable: dict[str, Any] = {
        "CARVEOUT_REGULATOR_TOKEN": "r",
        "CARVEOUT_GATEWAY_TOKEN": "g",
        "CARVEOUT_AUDITOR_TOKEN": "a",
    }
    settings = GrantSettings(**by_variable)
    assert settings.token_book().as_json() == {"regulator": "r", "gateway": "g", "auditor": "a"}


def test_shared_settings_can_be_given_by_field_name() -> None:
    """Keyword arguments by field name must not be dropped silently in favour of defaults."""
    settings = GrantSettings(
        kafka_bootstrap="localhost:1",
        regulator_token="r",
        gateway_token="g",
        auditor_token="a",
    )
    assert settings.kafka_bootstrap == "localhost:1"
    assert settings.token_book().as_json() == {"regulator": "r", "gateway": "g", "auditor": "a"}
