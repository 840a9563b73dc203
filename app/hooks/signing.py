"""Signatures of hook calls, in the style of Stripe's and Standard Webhooks' headers.

    Upload-Hook-Signature: t=1767225600,v1=<hex HMAC-SHA256 of "1767225600." + body>

The timestamp is inside what is signed, so a receiver that refuses old timestamps also
refuses a recorded call replayed later. `v1` names the scheme, so another can be added
beside it without breaking receivers.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Upload-Hook-Signature"
#: How far a receiver should let a signature's timestamp be from its own clock.
DEFAULT_TOLERANCE = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of `"<timestamp>." + body` under `secret`."""
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    """The Upload-Hook-Signature value for `body`, signed now unless `timestamp` is given."""
    when = int(time.time()) if timestamp is None else timestamp
    return f"t={when},v1={signature(secret, when, body)}"


def verify(
    secret: str,
    header: str,
    body: bytes,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> bool:
    """Whether `header` is a valid signature of `body` under `secret`, made within `tolerance`
    seconds of `now`: what a receiver checks (docs/integrating.md shows it standalone)."""
    values: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        values.setdefault(key, []).append(value)
    try:
        timestamp = int(values["t"][0])
    except (KeyError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body)
    return any(hmac.compare_digest(expected, given) for given in values.get("v1", []))
