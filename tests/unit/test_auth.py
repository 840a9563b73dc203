"""UPLOAD_AUTH_TOKENS entries, bare or named, and who check_bearer says is uploading."""

from __future__ import annotations

import pytest
from starlette.datastructures import Headers

from app.auth import BearerToken, check_bearer, parse_token_entries, parse_token_entry
from app.errors import Unauthorized

ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-0123456789abcdef"
BARE = "bare-token-0123456789abcdef"
TOKENS = parse_token_entries((f"alice:{ALICE}", f"bob:{BOB}", BARE))


def bearer(token: str) -> Headers:
    return Headers({"authorization": f"Bearer {token}"})


def test_entries_are_named_or_bare() -> None:
    expected = (BearerToken("alice", ALICE), BearerToken("bob", BOB), BearerToken("", BARE))
    assert parse_token_entries((f"alice:{ALICE}", f"bob:{BOB}", BARE)) == expected


@pytest.mark.parametrize(("token", "name"), [(ALICE, "alice"), (BOB, "bob"), (BARE, "")])
def test_the_matching_tokens_name_is_who_uploads(token: str, name: str) -> None:
    assert check_bearer(bearer(token), TOKENS) == name


def test_no_tokens_is_open_and_nobody_in_particular() -> None:
    assert check_bearer(Headers({}), ()) is None


@pytest.mark.parametrize("presented", [f"alice:{ALICE}", "alice", ALICE[:-1], ""])
def test_a_name_or_a_wrong_token_is_refused(presented: str) -> None:
    with pytest.raises(Unauthorized):
        check_bearer(bearer(presented), TOKENS)


def test_a_token_is_never_in_a_repr() -> None:
    assert ALICE not in repr(TOKENS)


@pytest.mark.parametrize(
    "entry",
    [
        "short",
        "alice:short",
        "al ice:" + ALICE,
        ":" + ALICE,
        "x" * 65 + ":" + ALICE,
        "a:" + ALICE + " x",
    ],
)
def test_invalid_entries_are_refused_without_showing_the_token(entry: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_token_entry(entry)
    assert ALICE not in str(caught.value)
    assert "short" not in str(caught.value)


def test_a_token_holding_a_colon_is_given_with_a_name() -> None:
    assert parse_token_entry("ci:abc:defghijklmnopqrstu") == BearerToken(
        "ci", "abc:defghijklmnopqrstu"
    )
