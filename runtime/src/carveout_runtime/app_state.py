"""What a service's builders put on ``app.state``, read back with its type."""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T")


def installed(app: Any, name: str, kind: type[T], missing: str) -> T:
    """``app.state.<name>``, a ``kind``; ``RuntimeError(missing)`` when the app was built
    without it (``missing`` says what puts it there)."""
    found = getattr(app.state, name, None)
    if not isinstance(found, kind):
        raise RuntimeError(missing)
    return found
