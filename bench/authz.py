"""The gateway authorization endpoint (DESIGN §14) over HTTP, as a gateway uses it.

Measured as the decision API is (``decision_http_p99_ms``: asking, recording nothing), and
again with every request recorded under a request id of its own, as the nginx example
runs it: then the same process also publishes 1,000 accesses a second and judges them
from ``carveout.access``, which is what the second figure shows.
"""

from __future__ import annotations

from .enforcement import TOKENS
from .httpload import fixed_rate

HOST = "127.0.0.1"


def authz_request(port: int, n: int, *, record: bool) -> bytes:
    """What nginx's auth_request sends for a client's request: the client's method, path
    and own credentials (never read), the access's attributes as headers, the gateway's
    token, and, when ``record``, a request id of its own to record it under."""
    recorded = f"x-carveout-record: true\r\nx-carveout-request-id: bench-authz-{n}\r\n"
    return (
        f"GET /v1/authz/v1/chat/completions HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        "Authorization: Bearer the-clients-own-key\r\n"
        f"x-carveout-gateway-token: {TOKENS['gateway']}\r\n"
        "x-carveout-gateway: gw-bench\r\n"
        "x-carveout-grantee: org-netsec\r\n"
        "x-carveout-model: mythos-preview\r\n"
        "x-carveout-user: user-1\r\n"
        "x-carveout-user-country: GB\r\n"
        "x-carveout-region: us-east\r\n"
        "x-carveout-purpose: vulnerability-scanning\r\n"
        "x-carveout-safeguards: access_logging,mfa\r\n"
        "x-carveout-units: 120\r\n"
        f"{recorded if record else ''}\r\n"
    ).encode()


async def authz_latency_ms(
    port: int, *, record: bool = False, rate: int = 1000, seconds: float = 5.0
) -> list[float]:
    """``GET /v1/authz/...`` at ``rate`` requests per second; latency of each."""
    return await fixed_rate(
        HOST,
        port,
        authz_request(port, 0, record=record),
        rate=rate,
        seconds=seconds,
        vary=(lambda n: authz_request(port, n + 1, record=True)) if record else None,
    )
