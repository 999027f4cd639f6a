"""``carveout tail TOPIC``: print a topic's events as they arrive, for people or for scripts.

The topic is read through the shared log reader (:mod:`carveout_runtime.logread`), without
a consumer group (partitions assigned by hand, no offsets committed), so tailing never
disturbs the services' groups and starts at once.

The package, one module per job: :mod:`.render` (a record as a line of JSON or of rich
markup) and :mod:`.commands` (:func:`tail`, and the command, :data:`app`, that cli.py adds).
"""

from __future__ import annotations

from .commands import TailError, app, tail
from .render import json_line, parse, pretty_line, summary

__all__ = ["TailError", "app", "json_line", "parse", "pretty_line", "summary", "tail"]
