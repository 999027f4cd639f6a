"""Time as the rules read it: passed in, the system's by default, so tests set it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

Clock = Callable[[], float]
"""Now, in seconds since the epoch (UTC)."""

Sleep = Callable[[float], Awaitable[None]]
"""Wait this many seconds (the clock's own way of letting time pass)."""

system_clock: Clock = time.time
system_sleep: Sleep = asyncio.sleep
