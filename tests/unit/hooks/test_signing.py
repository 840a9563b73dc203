"""Upload-Hook-Signature: made over the timestamp and the body, checked by the same rules a
receiver uses."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from app.hooks.signing import signature_header, verify

SECRET = "hook-secret-0123456789"
BODY = b'{"type":"post-finish","id":"e1"}'
NOW = 1_767_225_600


def test_the_header_is_hmac_sha256_of_timestamp_dot_body() -> None:
    header = signature_header(SECRET, BODY, timestamp=NOW)
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert header == f"t={NOW},v1={expected}"


def test_a_signature_verifies() -> None:
    assert verify(SECRET, signature_header(SECRET, BODY, timestamp=NOW), BODY, now=NOW + 10)


@pytest.mark.parametrize(
    ("secret", "body", "now"),
    [
        ("another-secret-0123456789", BODY, NOW),
        (SECRET, BODY + b" ", NOW),
        (SECRET, BODY, NOW + 301),
        (SECRET, BODY, NOW - 301),
    ],
    ids=["wrong secret", "changed body", "too old", "from the future"],
)
def test_a_wrong_secret_body_or_time_does_not_verify(secret: str, body: bytes, now: int) -> None:
    assert not verify(secret, signature_header(SECRET, BODY, timestamp=NOW), body, now=now)


@pytest.mark.parametrize("header", ["", "v1=abc", "t=x,v1=abc", f"t={NOW}", f"t={NOW},v1="])
def test_malformed_headers_do_not_verify(header: str) -> None:
    assert not verify(SECRET, header, BODY, now=NOW)


def test_a_changed_timestamp_does_not_verify() -> None:
    header = signature_header(SECRET, BODY, timestamp=NOW)
    forged = header.replace(f"t={NOW}", f"t={NOW + 1}")
    assert not verify(SECRET, forged, BODY, now=NOW)
