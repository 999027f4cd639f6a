"""What the enforcement routes take, as typed FastAPI dependencies on the app's context."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from carveout_runtime.composition import service_context

from .context import EnforcementContext
from .handlers.grants import GrantIndex
from .store import EnforcementStore

Context = Annotated[EnforcementContext, Depends(service_context(EnforcementContext))]


def _store(context: Context) -> EnforcementStore:
    return context.store


def _grants(context: Context) -> GrantIndex:
    return context.index


Store = Annotated[EnforcementStore, Depends(_store)]
Grants = Annotated[GrantIndex, Depends(_grants)]
"""Every grant's view, as enforcement sees it."""
