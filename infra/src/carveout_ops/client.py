"""A small HTTP client for the services' APIs, with the tokens of the running system."""

from __future__ import annotations

import json
from typing import Any

import httpx

from carveout_runtime.auth import Role, TokenBook

from .system import address, tokens_file


class ApiFailure(RuntimeError):
    pass


def token(role: Role) -> str:
    path = tokens_file()
    try:
        return TokenBook.read(path).tokens[role]
    except Exception as exc:
        raise ApiFailure(
            f"cannot read API tokens from {path} ({exc}); is `carveout up` running?"
        ) from None


def call(
    service: str, method: str, path: str, *, role: Role, body: Any = None, params: Any = None
) -> Any:
    url = address(service).url + path
    try:
        response = httpx.request(
            method,
            url,
            json=body,
            params=params,
            headers={"Authorization": f"Bearer {token(role)}"},
            timeout=10,
        )
    except httpx.HTTPError as exc:
        raise ApiFailure(f"{service} service at {url} did not answer: {exc}") from None
    try:
        payload = response.json()
    except json.JSONDecodeError:
        payload = {"message": response.text}
    if response.status_code >= 400:
        message = payload.get("message") if isinstance(payload, dict) else payload
        raise ApiFailure(f"{method} {path} -> {response.status_code}: {message}")
    return payload
