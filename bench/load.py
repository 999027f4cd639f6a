"""``python -m bench.load BOOTSTRAP RATE SECONDS``: steady access traffic, from its own process.

Cheap per event (copies of one serialised template with fresh ids), so the generator takes
as little as possible of the CPU the services under measurement share with it.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime

from carveout_ops.load import AccessTemplate, fast_copies, publish


def main() -> None:
    bootstrap, rate, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    # One unit each: a day of this stays under the demo grant's daily cap.
    template = AccessTemplate(gateway_id="gw-load", units=1).event(datetime(2026, 7, 1, tzinfo=UTC))
    asyncio.run(publish(bootstrap, fast_copies(template, int(rate * seconds)), rate=rate))


if __name__ == "__main__":
    main()
