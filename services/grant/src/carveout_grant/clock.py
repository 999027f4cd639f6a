"""The time the grant service's rules read, passed in rather than read from the system.

The composition root hands the system clock to the API, the breach policy, the relay and
a replay; tests hand them a fixed or stepping one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from carveout_contracts.common import utcnow

Clock = Callable[[], datetime]
"""Now, as an aware UTC datetime."""

system_clock: Clock = utcnow
