"""What the grant API's routes take, typed: the grant service, the time of the request,
the trace an action continues, a regulator's action made of those, and the check of a
webhook address.

The composition root gives the app one :class:`GrantContext`; routes ask for its parts
as ``Annotated`` dependencies and never read ``app.state``. The bearer checks and the
webhook check are the runtime's.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request

from carveout_runtime import telemetry
from carveout_runtime.composition import service_context
from carveout_runtime.http import Regulator, check_webhook

from .clock import Clock
from .propagation_book import PropagationBook
from .service import GrantService

TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


@dataclass(frozen=True, slots=True)
class GrantContext:
    """What the routes of one grant service app share."""

    service: GrantService
    clock: Clock
    propagation: PropagationBook | None = None
    """Propagation to enforcement, read and waited on (DESIGN §12)."""


Context = Annotated[GrantContext, Depends(service_context(GrantContext))]


async def grant_service(context: Context) -> GrantService:
    return context.service


async def request_time(context: Context) -> datetime:
    """The time the request is handled at: one reading of the clock for all of it."""
    return context.clock()


async def caller_trace(request: Request) -> str | None:
    """The context the action's event continues: the request's span when tracing is on,
    else the caller's own valid ``traceparent``."""
    if traced := telemetry.inject():
        return traced
    value = request.headers.get("traceparent", "")
    return value if TRACEPARENT.fullmatch(value) else None


CheckWebhook = Callable[[str, str], Awaitable[None]]
"""``check(address, field)``: 422 naming ``field`` unless Carveout may call ``address``."""


async def webhook_check(request: Request) -> CheckWebhook:
    """The runtime's webhook check (the app's allowed networks and resolver)."""

    async def check(address: str, field: str) -> None:
        await check_webhook(request, address, field)

    return check


Grants = Annotated[GrantService, Depends(grant_service)]
Now = Annotated[datetime, Depends(request_time)]
CallerTrace = Annotated[str | None, Depends(caller_trace)]
WebhookCheck = Annotated[CheckWebhook, Depends(webhook_check)]


@dataclass(frozen=True, slots=True)
class RegulatorAction:
    """A regulator's action as one request orders it: by whom, when, the trace its event
    continues, and the service that records it."""

    service: GrantService
    by: str
    now: datetime
    trace: str | None


async def regulator_action(
    role: Regulator, service: Grants, now: Now, trace: CallerTrace
) -> RegulatorAction:
    """Only a regulator acts (the edge reads this role check before the body)."""
    return RegulatorAction(service, role.value, now, trace)


Action = Annotated[RegulatorAction, Depends(regulator_action)]
