"""A service's ``serve`` command: the GIL handed between threads at short intervals."""

from __future__ import annotations

import importlib
import sys
from types import SimpleNamespace
from typing import Any

import pytest
import uvicorn
from typer.testing import CliRunner

from carveout_runtime import commands
from carveout_runtime.settings import SharedSettings


def test_serve_hands_the_gil_over_at_short_intervals(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.append(app))
    module = SimpleNamespace(make=lambda settings: "the app")
    monkeypatch.setattr(importlib, "import_module", lambda name: module)
    before = sys.getswitchinterval()
    try:
        cli = commands.service_cli("probe", "A service.", SharedSettings, "probe.app:make")
        result = CliRunner().invoke(cli, ["serve"])
        assert result.exit_code == 0, result.output
        assert served == ["the app"]
        # The store threads and the event loop each wait at most this for the GIL.
        assert sys.getswitchinterval() == pytest.approx(commands.SWITCH_INTERVAL_S)
        assert before > commands.SWITCH_INTERVAL_S
    finally:
        sys.setswitchinterval(before)
