"""Why a delivery attempt failed: retried later, or refused for good."""

from __future__ import annotations


class DeliveryFailed(Exception):
    pass


class Undeliverable(DeliveryFailed):
    """An address Carveout refuses to deliver to: failed at once, not retried."""
