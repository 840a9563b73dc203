"""Bearer tokens, checked from the headers before a byte of the body is read.

So a client that sends `Expect: 100-continue` is refused without sending its body, and nginx
can ask the same question cheaply with `auth_request` (GET /auth) before it reads any body.

An entry of UPLOAD_AUTH_TOKENS is `name:token` or a bare `token`. The name says who uploads
(hooks receive it, logs may show it); the token itself is never logged nor sent anywhere. A
bare token's name is the empty string: give tokens names to tell their uploads apart.
"""

from __future__ import annotations

import dataclasses
import hmac
import re

from starlette.datastructures import Headers

from app.errors import Unauthorized

#: A token's name: a short, printable, non-secret label (`alice`, `course-app`, `ci@build-3`).
TOKEN_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
MIN_TOKEN_CHARS = 16


@dataclasses.dataclass(frozen=True)
class BearerToken:
    """One accepted token and the name it uploads under ("" for a bare token)."""

    name: str
    secret: str = dataclasses.field(repr=False)  # never in a repr, a log line or a hook


def parse_token_entry(entry: str) -> BearerToken:
    """`name:token` or a bare `token`; ValueError says what is wrong, without the token.

    The first colon separates the name, so a token that itself holds a colon must be given
    with a name.
    """
    name, colon, secret = entry.partition(":")
    if not colon:
        name, secret = "", entry
    elif not TOKEN_NAME.fullmatch(name):
        raise ValueError("a token's name is 1 to 64 of A-Z a-z 0-9 _ . @ -")
    if len(secret) < MIN_TOKEN_CHARS or any(ch.isspace() for ch in secret):
        raise ValueError(
            f"a token is at least {MIN_TOKEN_CHARS} characters, without spaces"
            + (f" (the one named {name!r} is not)" if name else "")
        )
    return BearerToken(name, secret)


def parse_token_entries(entries: tuple[str, ...]) -> tuple[BearerToken, ...]:
    return tuple(parse_token_entry(entry) for entry in entries)


def check_bearer(headers: Headers, tokens: tuple[BearerToken, ...]) -> str | None:
    """Who uploads: the matching token's name, or None when no tokens are set (open).

    Raise Unauthorized unless `Authorization: Bearer <one of tokens>`.
    """
    if not tokens:
        return None
    scheme, _, presented = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise Unauthorized("send an Authorization: Bearer <token> header")
    candidate = presented.strip().encode()
    # Compare with every token, in constant time, so timing tells nothing about which or
    # how much of one matched.
    matched: str | None = None
    for token in tokens:
        if hmac.compare_digest(candidate, token.secret.encode()) and matched is None:
            matched = token.name
    if matched is None:
        raise Unauthorized("the bearer token is not valid")
    return matched
