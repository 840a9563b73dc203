"""The two resumable protocols spoken at /files/, told apart by their headers, and the header
values they share: tus 1.0.0 (https://tus.io/protocols/resumable-upload) and the IETF's
"Resumable Uploads for HTTP" (draft-ietf-httpbis-resumable-upload) at the interop versions
tus-js-client 4.x speaks: 5 (draft -03) and 6 (drafts -04 and -05).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import email.utils
import hashlib
import re
from collections.abc import Mapping
from typing import Literal

from app.errors import (
    InvalidMetadata,
    InvalidUploadHeader,
    UnsupportedChecksum,
    UnsupportedMediaType,
    UnsupportedProtocol,
)

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,creation-with-upload,termination,expiration,checksum"
#: Upload-Checksum algorithms, as tus names them (the hashlib names).
CHECKSUM_ALGORITHMS = ("md5", "sha1", "sha256", "sha512")
#: Upload-Draft-Interop-Version -> the draft it stands for.
IETF_INTEROP_VERSIONS = {"5": "ietf-draft-03", "6": "ietf-draft-05"}

#: The media type of an append's body in each protocol (None: any, or none, is taken).
TUS_BODY_TYPE = "application/offset+octet-stream"
IETF_BODY_TYPE = "application/partial-upload"

Name = Literal["tus", "ietf-draft-03", "ietf-draft-05"]


@dataclasses.dataclass(frozen=True)
class Protocol:
    name: Name

    @property
    def is_tus(self) -> bool:
        return self.name == "tus"

    @property
    def interop_version(self) -> str | None:
        for version, name in IETF_INTEROP_VERSIONS.items():
            if name == self.name:
                return version
        return None

    def headers(self) -> dict[str, str]:
        """What every answer in this protocol carries."""
        if self.is_tus:
            return {"Tus-Resumable": TUS_VERSION}
        return {"Upload-Draft-Interop-Version": self.interop_version or ""}

    def check_body_type(self, content_type: str | None) -> None:
        """An append's (or a creation's) body must be of the protocol's media type."""
        media = (content_type or "").split(";", 1)[0].strip().lower()
        if self.is_tus:
            if media != TUS_BODY_TYPE:
                raise UnsupportedMediaType(f"a tus append's Content-Type is {TUS_BODY_TYPE}")
        elif media not in ("", IETF_BODY_TYPE, "application/octet-stream"):
            raise UnsupportedMediaType(f"an append's Content-Type is {IETF_BODY_TYPE}")


def protocol_of(headers: Mapping[str, str]) -> Protocol:
    """The protocol a request speaks; 412 if none this server knows."""
    interop = headers.get("upload-draft-interop-version")
    if interop is not None:
        name = IETF_INTEROP_VERSIONS.get(interop.strip())
        if name is None:
            raise UnsupportedProtocol(
                f"Upload-Draft-Interop-Version {interop[:20]!r} is not spoken here; "
                f"5 (draft -03) and 6 (draft -05) are"
            )
        return Protocol(name)  # type: ignore[arg-type]
    version = headers.get("tus-resumable")
    if version is None:
        raise UnsupportedProtocol(
            "a resumable upload request carries Tus-Resumable: 1.0.0 or "
            "Upload-Draft-Interop-Version: 5 or 6"
        )
    if version.strip() != TUS_VERSION:
        raise UnsupportedProtocol(f"tus {version[:20]!r} is not spoken here; {TUS_VERSION} is")
    return Protocol("tus")


_SF_INTEGER = re.compile(r"^\s*(\d{1,15})\s*$")


def integer(headers: Mapping[str, str], name: str) -> int | None:
    """A non-negative integer header (Upload-Offset, Upload-Length), None when absent."""
    raw = headers.get(name)
    if raw is None:
        return None
    match = _SF_INTEGER.match(raw)
    if match is None:
        raise InvalidUploadHeader(f"{name} must be a non-negative integer, not {raw[:40]!r}")
    return int(match.group(1))


def upload_complete(headers: Mapping[str, str]) -> bool | None:
    """`Upload-Complete` (a structured-field boolean, `?1` or `?0`), None when absent."""
    raw = headers.get("upload-complete")
    if raw is None:
        return None
    value = raw.split(";", 1)[0].strip()  # parameters are allowed and ignored
    if value == "?1":
        return True
    if value == "?0":
        return False
    raise InvalidUploadHeader(f"Upload-Complete must be ?1 or ?0, not {raw[:40]!r}")


def boolean(value: bool) -> str:
    return "?1" if value else "?0"


def http_date(when: dt.datetime) -> str:
    """RFC 9110's IMF-fixdate, as Upload-Expires carries it."""
    return email.utils.format_datetime(when.astimezone(dt.UTC), usegmt=True)


#: Most bytes of Upload-Metadata taken: it is kept in the upload's state and echoed on HEAD.
MAX_METADATA_BYTES = 4096


def parse_metadata(raw: str | None) -> dict[str, str]:
    """tus's Upload-Metadata: `key base64value` pairs, comma-separated; values UTF-8.

    A key without a value (`is_confidential`) has the value "". Keys are unique.
    """
    if raw is None or not raw.strip():
        return {}
    if len(raw) > MAX_METADATA_BYTES:
        raise InvalidMetadata(f"Upload-Metadata is longer than {MAX_METADATA_BYTES} bytes")
    found: dict[str, str] = {}
    for pair in raw.split(","):
        key, _, encoded = pair.strip().partition(" ")
        encoded = encoded.strip()
        if not key or not key.isascii() or not key.isprintable() or " " in key:
            raise InvalidMetadata(f"Upload-Metadata has an invalid key {key[:40]!r}")
        if key in found:
            raise InvalidMetadata(f"Upload-Metadata repeats the key {key[:40]!r}")
        try:
            found[key] = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidMetadata(
                f"Upload-Metadata's value of {key[:40]!r} is not base64 of UTF-8 text"
            ) from None
    return found


@dataclasses.dataclass(frozen=True)
class Checksum:
    """An append's Upload-Checksum: `algorithm base64digest`."""

    algorithm: str
    digest: bytes

    def hasher(self) -> hashlib._Hash:
        return hashlib.new(self.algorithm)


def parse_checksum(raw: str | None) -> Checksum | None:
    if raw is None:
        return None
    algorithm, _, encoded = raw.strip().partition(" ")
    algorithm = algorithm.lower()
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise UnsupportedChecksum(
            f"Upload-Checksum algorithm {algorithm[:20]!r} is not supported; "
            + ", ".join(CHECKSUM_ALGORITHMS)
            + " are"
        )
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error:
        raise InvalidUploadHeader("Upload-Checksum's digest is not base64") from None
    if len(digest) != hashlib.new(algorithm).digest_size:
        raise InvalidUploadHeader(f"Upload-Checksum's digest is not a {algorithm} digest")
    return Checksum(algorithm, digest)
