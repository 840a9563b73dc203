"""The resumable protocols' headers: which protocol a request speaks, and the values tus and
the IETF drafts share."""

from __future__ import annotations

import base64
import hashlib

import pytest

from app.errors import (
    InvalidMetadata,
    InvalidUploadHeader,
    UnsupportedChecksum,
    UnsupportedMediaType,
    UnsupportedProtocol,
)
from app.resumable import protocol as proto


@pytest.mark.parametrize(
    ("headers", "name"),
    [
        ({"tus-resumable": "1.0.0"}, "tus"),
        ({"upload-draft-interop-version": "5"}, "ietf-draft-03"),
        ({"upload-draft-interop-version": "6"}, "ietf-draft-05"),
        # tus-js-client sends only the interop header in its IETF modes; both: the draft's.
        ({"upload-draft-interop-version": "6", "tus-resumable": "1.0.0"}, "ietf-draft-05"),
    ],
)
def test_the_protocol_comes_from_the_headers(headers: dict[str, str], name: str) -> None:
    assert proto.protocol_of(headers).name == name


@pytest.mark.parametrize(
    "headers",
    [{}, {"tus-resumable": "0.2.2"}, {"upload-draft-interop-version": "8"}],
)
def test_other_protocols_are_refused(headers: dict[str, str]) -> None:
    with pytest.raises(UnsupportedProtocol):
        proto.protocol_of(headers)


def test_upload_complete_is_a_structured_boolean() -> None:
    assert proto.upload_complete({"upload-complete": "?1"}) is True
    assert proto.upload_complete({"upload-complete": "?0;x=1"}) is False
    assert proto.upload_complete({}) is None
    for bad in ("1", "true", "?2", ""):
        with pytest.raises(InvalidUploadHeader):
            proto.upload_complete({"upload-complete": bad})


def test_offsets_are_non_negative_integers() -> None:
    assert proto.integer({"upload-offset": " 42 "}, "upload-offset") == 42
    assert proto.integer({}, "upload-offset") is None
    for bad in ("-1", "1.5", "0x10", "1" * 16, ""):
        with pytest.raises(InvalidUploadHeader):
            proto.integer({"upload-offset": bad}, "upload-offset")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_metadata_is_read_as_tus_clients_write_it() -> None:
    raw = f"filename {b64('été.mp4')},filetype {b64('video/mp4')},is_confidential"
    assert proto.parse_metadata(raw) == {
        "filename": "été.mp4",
        "filetype": "video/mp4",
        "is_confidential": "",
    }
    assert proto.parse_metadata("") == {} and proto.parse_metadata(None) == {}


@pytest.mark.parametrize(
    "raw", ["filename ***", f"a {b64('x')},a {b64('y')}", "a,,b", "k\u00e9y " + b64("v")]
)
def test_bad_metadata_is_refused(raw: str) -> None:
    with pytest.raises(InvalidMetadata):
        proto.parse_metadata(raw)


def test_checksums_name_an_algorithm_and_a_digest_of_its_size() -> None:
    digest = base64.b64encode(hashlib.sha1(b"hello world").digest()).decode()
    assert digest == "Kq5sNclPz7QV2+lfQIuc6R7oRu0="  # the tus specification's example
    checksum = proto.parse_checksum(f"sha1 {digest}")
    assert checksum is not None and checksum.algorithm == "sha1"
    assert proto.parse_checksum(None) is None
    with pytest.raises(UnsupportedChecksum):
        proto.parse_checksum(f"crc32 {digest}")
    with pytest.raises(InvalidUploadHeader):
        proto.parse_checksum(f"md5 {digest}")  # a sha1-sized digest


def test_body_types_per_protocol() -> None:
    proto.Protocol("tus").check_body_type("application/offset+octet-stream")
    proto.Protocol("ietf-draft-05").check_body_type("application/partial-upload")
    proto.Protocol("ietf-draft-03").check_body_type(None)
    with pytest.raises(UnsupportedMediaType):
        proto.Protocol("tus").check_body_type(None)
    with pytest.raises(UnsupportedMediaType):
        proto.Protocol("ietf-draft-05").check_body_type("text/plain")
