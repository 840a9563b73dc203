"""The SHA-256 whose state is saved and resumed: the same digest as hashlib's, however the
bytes are split and wherever the state is resumed."""

from __future__ import annotations

import hashlib
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.resumable.sha256 import ResumableSha256, available

pytestmark = pytest.mark.skipif(not available(), reason="libcrypto's SHA256 is not loadable")


@given(st.lists(st.binary(max_size=300), max_size=8))
def test_a_digest_resumed_after_every_piece_is_hashlibs(pieces: list[bytes]) -> None:
    state = ResumableSha256().state()
    for piece in pieces:
        hasher = ResumableSha256(state)
        hasher.update(bytearray(piece))  # writable memory, as part buffers are
        state = hasher.state()
    assert ResumableSha256(state).hexdigest() == hashlib.sha256(b"".join(pieces)).hexdigest()


def test_read_only_and_sliced_views_are_hashed_too() -> None:
    data = os.urandom(3 * 1024 * 1024 + 7)
    hasher = ResumableSha256()
    hasher.update(memoryview(data)[:1000])  # read-only
    hasher.update(memoryview(bytearray(data))[1000:])
    assert hasher.hexdigest() == hashlib.sha256(data).hexdigest()


def test_the_state_is_text_and_a_foreign_one_is_refused() -> None:
    state = ResumableSha256().state()
    assert isinstance(state, str) and len(state) == 152  # 112 bytes of base64
    with pytest.raises(ValueError):
        ResumableSha256("AAAA")


def test_hexdigest_does_not_end_the_hash() -> None:
    hasher = ResumableSha256()
    hasher.update(bytearray(b"abc"))
    assert hasher.hexdigest() == hashlib.sha256(b"abc").hexdigest()
    hasher.update(bytearray(b"def"))
    assert hasher.hexdigest() == hashlib.sha256(b"abcdef").hexdigest()
