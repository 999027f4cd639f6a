"""Chaos: randomised faults against a running system under traffic, then exact counts.

``python -m tests.chaos`` (``make chaos``) starts ``carveout up --replicas 2`` on
PostgreSQL with four partitions, drives gateways and a regulator at it, injects faults
from a seeded schedule (SIGKILL and SIGSTOP of any replica, the embedded broker killed,
PostgreSQL connections terminated, duplicated and poison records), lets the system
settle, and checks every effect against what was sent (see :mod:`.checks`).
"""
