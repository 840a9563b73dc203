"""`python -m app sweep`: incomplete multipart uploads left by a killed process.

Against `rclone serve s3`, which reports real `Initiated` times (moto answers a fixed date in
2010, which would make every upload look old).
"""

from __future__ import annotations

import pytest

from app.__main__ import main
from app.ops.sweep import parse_duration
from harness.processes import free_port
from harness.store import Bucket

pytestmark = pytest.mark.rclone


def start_uploads(bucket: Bucket, *keys: str) -> dict[str, str]:
    ids = {}
    for key in keys:
        ids[key] = bucket.s3.create_multipart_upload(Bucket=bucket.name, Key=key)["UploadId"]
        bucket.s3.upload_part(
            Bucket=bucket.name, Key=key, UploadId=ids[key], PartNumber=1, Body=b"x" * 1000
        )
    return ids


@pytest.fixture
def env(bucket: Bucket, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S3_BUCKET", bucket.name)
    monkeypatch.setenv("S3_ENDPOINT_URL", bucket.endpoint)
    monkeypatch.setenv("S3_KEY_PREFIX", "uploads/")


@pytest.mark.usefixtures("env")
def test_dry_run_lists_and_apply_aborts_only_under_the_prefix(
    bucket: Bucket, capsys: pytest.CaptureFixture[str]
) -> None:
    start_uploads(bucket, "uploads/a/1.bin", "uploads/b/2.bin", "elsewhere/3.bin")

    assert main(["sweep", "--older-than", "0"]) == 0
    out = capsys.readouterr().out
    assert "would abort uploads/a/1.bin" in out and "would abort uploads/b/2.bin" in out
    assert "elsewhere" not in out and "2 incomplete multipart upload(s)" in out
    assert len(bucket.incomplete_uploads()) == 3  # a dry run changes nothing

    assert main(["sweep", "--older-than", "0", "--apply"]) == 0
    assert "aborting uploads/a/1.bin" in capsys.readouterr().out
    assert [u["Key"] for u in bucket.incomplete_uploads()] == ["elsewhere/3.bin"]


@pytest.mark.usefixtures("env")
@pytest.mark.parametrize("apply", [[], ["--apply"]])
def test_a_bucket_that_never_had_a_multipart_upload_has_nothing_to_sweep(
    bucket: Bucket, capsys: pytest.CaptureFixture[str], apply: list[str]
) -> None:
    """rclone answers ListMultipartUploads there with 404 NoSuchUpload, not an empty list."""
    assert main(["sweep", "--older-than", "0", *apply]) == 0
    assert "0 incomplete multipart upload(s)" in capsys.readouterr().out


def test_a_store_that_fails_the_listing_gets_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("S3_BUCKET", "no-such-bucket-here")
    monkeypatch.setenv("S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing there
    monkeypatch.setenv("S3_MAX_ATTEMPTS", "1")
    assert main(["sweep", "--older-than", "0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("storage ListObjectsV2 failed: ") and err.count("\n") == 1


@pytest.mark.usefixtures("env")
def test_recent_uploads_are_left_alone(bucket: Bucket, capsys: pytest.CaptureFixture[str]) -> None:
    start_uploads(bucket, "uploads/in-flight.bin")
    assert main(["sweep", "--older-than", "1h", "--apply"]) == 0
    assert "0 incomplete multipart upload(s)" in capsys.readouterr().out
    assert len(bucket.incomplete_uploads()) == 1


@pytest.mark.usefixtures("env")
def test_bad_duration_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", "--older-than", "soon"]) == 2
    assert "not a duration" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("30m", 1800), ("24h", 86400), ("7d", 604800)]
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds


def test_with_no_prefix_the_hooks_records_are_never_swept(
    bucket: Bucket, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("S3_BUCKET", bucket.name)
    monkeypatch.setenv("S3_ENDPOINT_URL", bucket.endpoint)
    monkeypatch.setenv("S3_KEY_PREFIX", "")  # set but empty: the whole bucket is the prefix
    start_uploads(bucket, "a/1.bin", ".upload-hooks/pending/x.json")
    assert main(["sweep", "--older-than", "0", "--apply"]) == 0
    out = capsys.readouterr().out
    assert "aborting a/1.bin" in out and ".upload-hooks" not in out
    assert [u["Key"] for u in bucket.incomplete_uploads()] == [".upload-hooks/pending/x.json"]
