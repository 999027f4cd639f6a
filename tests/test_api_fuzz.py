"""Every HTTP API fuzzed from its own OpenAPI document (schemathesis) on the running system.

For each operation of each service, valid and invalid requests generated from the schema
are sent with a token of a role the operation admits (its ``x-carveout-roles``). Every
answer must be no 5xx, a documented status with a documented content type, and a body
matching its documented schema; invalid requests must be refused. Cross-field rules a
schema cannot express (``valid_until`` after ``valid_from``) make valid-looking requests
fail with 422, so schemathesis's "valid data is accepted" check is left out.

``CARVEOUT_FUZZ_EXAMPLES`` sets the examples per operation and mode (default 25).
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance

from .system import SERVICES, System

pytestmark = pytest.mark.broker

EXAMPLES = int(os.environ.get("CARVEOUT_FUZZ_EXAMPLES", "25"))


def token_for(operation: Any, tokens: dict[str, str]) -> str:
    """A token the operation admits: the regulator's where it may, else the first role's."""
    roles: list[str] = operation.definition.raw.get("x-carveout-roles", [])
    role = "regulator" if "regulator" in roles or not roles else roles[0]
    return tokens[role]


def headers_for(operation: Any, tokens: dict[str, str]) -> dict[str, str]:
    """A bearer token the operation admits; and for the authorization endpoint, which
    reads the gateway's token from a header of its own, the gateway's token there."""
    headers = {"Authorization": f"Bearer {token_for(operation, tokens)}"}
    if {"gatewayToken": []} in operation.definition.raw.get("security", []):
        headers["x-carveout-gateway-token"] = tokens["gateway"]
    return headers


def fuzz(operation: Any, mode: GenerationMode, headers: dict[str, str]) -> list[str]:
    """Run one operation's examples; returns the failures schemathesis found, as text."""
    failures: list[str] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,  # the same requests every run: a failure here is reproducible
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        # A query parameter whose value is null or an empty list is not sent at all: a
        # case made invalid only by one would reach the API as a valid request.
        assume(not any(value is None or value == [] for value in (case.query or {}).values()))
        case.call_and_validate(
            headers=headers,
            excluded_checks=[positive_data_acceptance],
            timeout=10,
        )

    try:
        run()
    except Unsatisfiable:
        pass  # nothing to make invalid: an operation without parameters or body
    except (Exception, BaseExceptionGroup) as exc:  # schemathesis's failures, with curl
        failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}): {exc}")
    return failures


@pytest.mark.parametrize("service", SERVICES)
def test_no_request_breaks_the_api(system: System, service: str) -> None:
    schema = schemathesis.openapi.from_url(system.url(service) + "/openapi.json")
    tokens = system.tokens()
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations, f"{service} documents no operations"
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failures += fuzz(operation, mode, headers_for(operation, tokens))
    assert not failures, "\n\n".join(failures)
