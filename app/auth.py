"""Bearer tokens, checked from the headers before a byte of the body is read.

So a client that sends `Expect: 100-continue` is refused without sending its body, and nginx
can ask the same question cheaply with `auth_request` (GET /auth) before it reads any body.
"""

from __future__ import annotations

import hmac

from starlette.datastructures import Headers

from app.errors import Unauthorized


def check_bearer(headers: Headers, tokens: tuple[str, ...]) -> None:
    """Raise Unauthorized unless `Authorization: Bearer <one of tokens>`; no tokens = open."""
    if not tokens:
        return
    scheme, _, presented = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise Unauthorized("send an Authorization: Bearer <token> header")
    candidate = presented.strip().encode()
    # Compare with every token, in constant time, so timing tells nothing about which or
    # how much of one matched.
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(candidate, token.encode())
    if not matched:
        raise Unauthorized("the bearer token is not valid")
