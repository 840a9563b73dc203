"""tus Upload-Checksum by hand-made requests (httpx) against a real uvicorn process storing into
`rclone serve s3`: md5 that matches, md5 that does not (460, nothing kept, nothing new in the
bucket), and a sha1-checksummed PATCH whose client goes away midway (nothing kept: its bytes
cannot be verified). tuspy's own sha1 PATCHes are in test_tuspy.py."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from harness.processes import wait_until
from harness.store import Bucket, MiB
from tests.e2e.conftest import StartApp
from tests.e2e.tus import (
    OCTETS,
    TUS,
    assert_completed,
    assert_error,
    checksum,
    create,
    cut_off_patches,
    head_offset,
    patch,
    tails,
    upload_state,
)

PART = 5 * MiB


def test_md5_checksums_keep_a_matching_patch_and_refuse_a_mismatch(
    bucket: Bucket, start_app: StartApp
) -> None:
    app = start_app(bucket, part_size=PART)
    data = os.urandom(9 * MiB)
    path = create(app.url, len(data))
    first = data[: 3 * MiB]
    response = patch(app.url, path, 0, first, checksum("md5", first))
    assert response.status_code == 204, response.text
    assert response.headers["upload-offset"] == str(3 * MiB)
    stored_before, tails_before = bucket.keys(), tails(bucket)
    assert len(tails_before) == 1

    # Within the current part: nothing of it reaches the bucket unless it is verified.
    second = data[3 * MiB : 4 * MiB]
    response = patch(app.url, path, 3 * MiB, second, checksum("md5", b"other bytes"))
    assert_error(response, 460, "checksum_mismatch")
    assert response.headers["upload-offset"] == str(3 * MiB)
    assert head_offset(app.url, path) == 3 * MiB
    assert bucket.keys() == stored_before
    assert bucket.parts_stored() == 0

    rest = data[3 * MiB :]
    response = patch(app.url, path, 3 * MiB, rest, checksum("md5", rest))
    assert response.status_code == 204, response.text
    assert response.headers["upload-offset"] == str(len(data))
    assert_completed(bucket, path, data)


class CutOff(Exception):
    """The client gives up on its request body."""


def test_a_sha1_patch_cut_off_midway_keeps_nothing(bucket: Bucket, start_app: StartApp) -> None:
    """The PATCH (2 → 10 MiB) crosses a part boundary, and its client stops sending once the
    part is stored: the part stays in the multipart upload, unrecorded, the old tail stays the
    tail, and the offset does not move. The next PATCH writes the part again."""
    app = start_app(bucket, part_size=PART)
    data = os.urandom(12 * MiB)
    path = create(app.url, len(data))
    response = patch(app.url, path, 0, data[: 2 * MiB])
    assert response.status_code == 204, response.text
    stored_before = bucket.keys()

    cut = data[2 * MiB : 10 * MiB]

    def body() -> Iterator[bytes]:
        yield cut[: 4 * MiB]  # 2 + 4 MiB: part 1 is full and sent
        assert wait_until(lambda: bucket.parts_stored() == 1, timeout=30)
        raise CutOff

    headers = {
        **TUS,
        **OCTETS,
        **checksum("sha1", cut),
        "Upload-Offset": str(2 * MiB),
        "Content-Length": str(len(cut)),
    }
    with pytest.raises(CutOff):
        httpx.patch(f"{app.url}{path}", content=body(), headers=headers, timeout=60)

    assert wait_until(lambda: cut_off_patches(app.port) == 1, timeout=30)
    state = upload_state(bucket, path)
    assert state["lease"] is None and state["parts"] == []
    assert head_offset(app.url, path) == 2 * MiB
    assert bucket.keys() == stored_before  # the tail of the first PATCH, and no other

    rest = data[2 * MiB :]
    response = patch(app.url, path, 2 * MiB, rest, checksum("sha1", rest))
    assert response.status_code == 204, response.text
    assert_completed(bucket, path, data)
