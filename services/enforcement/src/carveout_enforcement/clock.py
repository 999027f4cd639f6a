"""Time as the rules read it: passed in, the system's by default, so tests set it."""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]
"""Now, in seconds since the epoch (UTC)."""

system_clock: Clock = time.time
