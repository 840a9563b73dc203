"""A SHA-256 whose state can be saved and resumed elsewhere: the whole file's digest of an
upload that arrives in many requests, on any instance.

hashlib cannot export a hash's state, so the digest runs on OpenSSL's SHA256_* functions
(the same code hashlib uses) through ctypes, and the state is the 112 bytes of OpenSSL's
SHA256_CTX, the same on every 64-bit build of OpenSSL 1.1 and 3. ctypes releases the GIL
during each call, so a part is hashed in a worker thread while the loop goes on.

Where libcrypto cannot be loaded, `available()` is False and resumable uploads carry no
whole-file SHA-256 (their per-part checksums still hold).
"""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import functools
import hashlib

_CTX_SIZE = 112  # sizeof(SHA256_CTX): h[8], Nl, Nh, data[16], num, md_len (32-bit each)
#: Tells a saved state from another format (a future change of how it is kept).
STATE_FORMAT = "openssl-sha256-ctx"


@functools.cache
def _libcrypto() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("crypto")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
        lib.SHA256_Init.argtypes = [ctypes.c_void_p]
        lib.SHA256_Update.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        lib.SHA256_Final.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    except (OSError, AttributeError):
        return None
    if not _self_test(lib):
        return None
    return lib


def _self_test(lib: ctypes.CDLL) -> bool:
    ctx = ctypes.create_string_buffer(_CTX_SIZE)
    lib.SHA256_Init(ctx)
    lib.SHA256_Update(ctx, b"resumable", 9)
    resumed = ctypes.create_string_buffer(ctx.raw, _CTX_SIZE)
    lib.SHA256_Update(resumed, b" sha256", 7)
    out = ctypes.create_string_buffer(32)
    lib.SHA256_Final(out, resumed)
    return out.raw == hashlib.sha256(b"resumable sha256").digest()


def available() -> bool:
    return _libcrypto() is not None


class ResumableSha256:
    """SHA-256 over bytes given in order, with `state()` to save it and `resume()` to go on."""

    def __init__(self, state: str | None = None) -> None:
        lib = _libcrypto()
        if lib is None:
            raise RuntimeError("libcrypto's SHA256 functions are not available")
        self._lib = lib
        self._ctx = ctypes.create_string_buffer(_CTX_SIZE)
        if state is None:
            lib.SHA256_Init(self._ctx)
        else:
            raw = base64.b64decode(state)
            if len(raw) != _CTX_SIZE:
                raise ValueError("not a saved SHA-256 state")
            ctypes.memmove(self._ctx, raw, _CTX_SIZE)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        if not view.nbytes:
            return
        if view.readonly:
            self._lib.SHA256_Update(self._ctx, bytes(view), view.nbytes)
            return
        array = (ctypes.c_char * view.nbytes).from_buffer(view)
        self._lib.SHA256_Update(self._ctx, ctypes.addressof(array), view.nbytes)

    def state(self) -> str:
        """The state so far, as text that `ResumableSha256(state)` takes back."""
        return base64.b64encode(self._ctx.raw).decode()

    def hexdigest(self) -> str:
        copy = ctypes.create_string_buffer(self._ctx.raw, _CTX_SIZE)
        out = ctypes.create_string_buffer(32)
        self._lib.SHA256_Final(out, copy)
        return out.raw.hex()
