"""Bearer tokens and roles."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from carveout_runtime.auth import (
    ANY_ROLE,
    AuthError,
    Caller,
    MissingTokens,
    Role,
    TokenBook,
    bound_gateway_id,
)

BOOK = TokenBook({Role.REGULATOR: "tok-reg", Role.GATEWAY: "tok-gw", Role.AUDITOR: "tok-aud"})


def deny(authorization: str | None, allowed: frozenset[Role] | set[Role]) -> AuthError:
    with pytest.raises(AuthError) as caught:
        BOOK.authorize(authorization, allowed)
    return caught.value


@pytest.mark.parametrize("header", [None, ""])
def test_missing_header_is_401(header: str | None) -> None:
    error = deny(header, ANY_ROLE)
    assert error.status == 401
    assert "missing bearer token" in error.message


@pytest.mark.parametrize(
    "header", ["tok-reg", "Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Bearer    ", "Token tok-reg"]
)
def test_malformed_header_is_401(header: str) -> None:
    error = deny(header, ANY_ROLE)
    assert error.status == 401
    assert "malformed" in error.message


@pytest.mark.parametrize("header", ["Bearer nope", "Bearer tok-reg-extra", "Bearer TOK-REG"])
def test_unknown_token_is_401(header: str) -> None:
    error = deny(header, ANY_ROLE)
    assert error.status == 401
    assert error.message == "unknown bearer token"
    assert str(error) == error.message


def test_wrong_role_is_403_naming_the_needed_role() -> None:
    error = deny("Bearer tok-gw", {Role.REGULATOR})
    assert error.status == 403
    assert "gateway" in error.message
    assert "needs regulator" in error.message


def test_wrong_role_names_every_allowed_role() -> None:
    error = deny("Bearer tok-aud", {Role.REGULATOR, Role.GATEWAY})
    assert error.status == 403
    assert "needs gateway or regulator" in error.message


@pytest.mark.parametrize(
    ("header", "role"),
    [
        ("Bearer tok-reg", Role.REGULATOR),
        ("bearer tok-gw", Role.GATEWAY),
        ("BEARER  tok-aud ", Role.AUDITOR),
    ],
)
def test_right_role_is_returned(header: str, role: Role) -> None:
    assert BOOK.authorize(header, ANY_ROLE) is role
    assert BOOK.authorize(header, [role]) is role


def test_role_of() -> None:
    assert BOOK.role_of("tok-reg") is Role.REGULATOR
    assert BOOK.role_of("nobody") is None


def test_generate_makes_distinct_tokens_for_every_role() -> None:
    book = TokenBook.generate()
    assert set(book.tokens) == set(Role)
    assert len(set(book.tokens.values())) == len(Role)
    assert all(len(token) >= 32 for token in book.tokens.values())
    assert book.tokens != TokenBook.generate().tokens


def test_load_or_create_writes_a_private_file_and_reads_it_back(tmp_path: Path) -> None:
    path = tmp_path / "var" / "tokens.json"
    book, created = TokenBook.load_or_create(path)
    assert created is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {
        "regulator": book.tokens[Role.REGULATOR],
        "gateway": book.tokens[Role.GATEWAY],
        "auditor": book.tokens[Role.AUDITOR],
    }
    assert [p.name for p in path.parent.iterdir()] == ["tokens.json"]

    again, created_again = TokenBook.load_or_create(path)
    assert created_again is False
    assert again == book
    assert again.authorize(f"Bearer {book.tokens[Role.GATEWAY]}", [Role.GATEWAY]) is Role.GATEWAY


def test_read_refuses_broken_token_files(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    with pytest.raises(MissingTokens, match="does not exist"):
        TokenBook.read(path)
    path.write_text("{not json")
    with pytest.raises(MissingTokens, match="not JSON"):
        TokenBook.read(path)
    path.write_text(json.dumps({"regulator": "r", "gateway": ""}))
    with pytest.raises(MissingTokens, match="no token for: gateway, auditor"):
        TokenBook.read(path)


def test_configured_prefers_tokens_given_one_by_one(tmp_path: Path) -> None:
    book = TokenBook.configured(
        tokens_file=tmp_path / "absent.json", regulator="r", gateway="g", auditor="a"
    )
    assert book.as_json() == {"regulator": "r", "gateway": "g", "auditor": "a"}


def test_configured_falls_back_to_the_token_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"regulator": "r1", "gateway": "g1", "auditor": "a1"}))
    book = TokenBook.configured(tokens_file=path, regulator="r", gateway=None, auditor=None)
    assert book.as_json() == {"regulator": "r1", "gateway": "g1", "auditor": "a1"}


def test_configured_refuses_without_tokens() -> None:
    with pytest.raises(MissingTokens) as caught:
        TokenBook.configured(tokens_file=None, regulator=None, gateway=None, auditor=None)
    message = str(caught.value)
    assert "CARVEOUT_TOKENS_FILE" in message
    assert "regulator, gateway, auditor" in message


def test_configured_names_only_the_missing_tokens() -> None:
    with pytest.raises(MissingTokens) as caught:
        TokenBook.configured(tokens_file=None, regulator="r", gateway="", auditor=None)
    message = str(caught.value)
    assert "tokens for gateway, auditor (" in message
    assert "CARVEOUT_AUDITOR_TOKEN" in message


def test_configured_with_a_missing_token_file_refuses(tmp_path: Path) -> None:
    with pytest.raises(MissingTokens, match="does not exist"):
        TokenBook.configured(
            tokens_file=tmp_path / "absent.json", regulator=None, gateway=None, auditor=None
        )


# --------------------------------------------------------------------------- named tokens


def write_tokens(path: Path, **extra: object) -> Path:
    path.write_text(
        json.dumps({"regulator": "tok-reg", "gateway": "tok-gw", "auditor": "tok-aud", **extra})
    )
    return path


def test_named_tokens_are_read_and_identify_their_holder(tmp_path: Path) -> None:
    named = [
        {"name": "gw-east", "role": "gateway", "token": "tok-east"},
        {"name": "alice", "role": "regulator", "token": "tok-alice"},
    ]
    book = TokenBook.read(write_tokens(tmp_path / "tokens.json", named=named))
    assert book.authenticate("Bearer tok-east", [Role.GATEWAY]) == Caller(Role.GATEWAY, "gw-east")
    assert book.authenticate("Bearer tok-gw", [Role.GATEWAY]) == Caller(Role.GATEWAY)
    assert book.authorize("Bearer tok-alice", [Role.REGULATOR]) is Role.REGULATOR
    with pytest.raises(AuthError) as caught:
        book.authorize("Bearer tok-east", [Role.REGULATOR])
    assert caught.value.status == 403
    assert book.as_json()["named"] == named


@pytest.mark.parametrize(
    ("named", "complaint"),
    [
        ({"role": "gateway", "token": "t"}, "'name'"),
        ({"name": "x", "role": "admin", "token": "t"}, "'role'"),
        ({"name": "x", "role": "gateway"}, "'token'"),
        ({"name": "x", "role": "gateway", "token": "tok-gw"}, "the same"),
        ("gw-east", "must be an object"),
    ],
)
def test_unusable_named_tokens_are_refused(tmp_path: Path, named: object, complaint: str) -> None:
    with pytest.raises(MissingTokens, match=complaint):
        TokenBook.read(write_tokens(tmp_path / "tokens.json", named=[named]))


def test_a_named_gateway_token_is_bound_to_its_gateway_id() -> None:
    east = Caller(Role.GATEWAY, "gw-east")
    assert bound_gateway_id(east, None) == "gw-east"
    assert bound_gateway_id(east, "gw-east") == "gw-east"
    with pytest.raises(AuthError) as caught:
        bound_gateway_id(east, "gw-west")
    assert caught.value.status == 403
    assert "'gw-west'" in caught.value.message and "'gw-east'" in caught.value.message
    # a role token speaks for whichever gateway the event names
    assert bound_gateway_id(Caller(Role.GATEWAY), "gw-west") == "gw-west"
    assert bound_gateway_id(Caller(Role.GATEWAY), None) is None
