"""`python -m app upload` and `python -m app loadtest` as processes against a real uvicorn app
storing into `rclone serve s3`: what they print, their exit status, and what was stored."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote

from app.client.generated import generated_chunks
from app.client.loadtest import LoadPlan
from app.forms.keys import ORIGINAL_NAME_KEY
from harness.forms import write_generated
from harness.processes import ROOT
from harness.servers import run_app_command, service_environment
from harness.store import Bucket, MiB
from tests.e2e.conftest import StartApp

PART = 5 * MiB
TOKEN = "cli-test-token-0123456789"


#: The upload CLI honours proxy settings; the app is on loopback.
NO_PROXY = {"NO_PROXY": "127.0.0.1,localhost"}


def cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m app ARGV`, its output as text."""
    return run_app_command(*argv, env={**NO_PROXY, **(env or {})})


def test_upload_sends_files_and_fields_in_one_request(
    bucket: Bucket, start_app: StartApp, tmp_path: Path
) -> None:
    # A low threshold, so the 12 MiB file goes as a multipart upload of 5 MiB parts.
    app = start_app(bucket, part_size=PART, env={"UPLOAD_MULTIPART_THRESHOLD": "5MiB"})
    big = tmp_path / "big.bin"
    big_sha = write_generated(big, 12 * MiB, seed=1)
    small = tmp_path / "notes é.txt"
    small.write_text("small file\n")
    result = cli("upload", str(big), str(small), "--field", "title=trip", "--url", app.url)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["fields"] == {"title": "trip"}
    stored_big, stored_small = answer["files"]
    assert (stored_big["filename"], stored_big["size"]) == ("big.bin", 12 * MiB)
    assert (stored_big["strategy"], stored_big["parts"]) == ("multipart", 3)
    assert stored_big["sha256"] == big_sha == bucket.sha256(stored_big["key"])
    small_sha = hashlib.sha256(small.read_bytes()).hexdigest()
    assert stored_small["filename"] == "notes é.txt"
    assert stored_small["content_type"] == "text/plain"
    assert stored_small["sha256"] == small_sha == bucket.sha256(stored_small["key"])
    assert bucket.incomplete_uploads() == []
    assert "sent 12.0 MiB" in result.stderr  # stderr is a pipe: the final line only


def test_upload_sends_names_as_browsers_do_and_they_come_back(
    bucket: Bucket, start_app: StartApp, tmp_path: Path
) -> None:
    """Files named with quotes, a backslash, a line break and emoji: the encoder writes them
    as browsers do, and the service answers and keeps the names as the files had them."""
    app = start_app(bucket, part_size=PART)
    names = ['my "best" photo\\x.txt', "line\nbreak 😀.txt"]
    paths = [tmp_path / name for name in names]
    for index, path in enumerate(paths):
        path.write_bytes(b"contents %d\r\n--" % index)
    result = cli("upload", *map(str, paths), "--url", app.url)
    assert result.returncode == 0, result.stderr
    for stored, path in zip(json.loads(result.stdout)["files"], paths, strict=True):
        assert stored["filename"] == path.name
        metadata = {k.lower(): v for k, v in bucket.head(stored["key"])["Metadata"].items()}
        assert unquote(metadata[ORIGINAL_NAME_KEY]) == path.name
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert stored["sha256"] == digest == bucket.sha256(stored["key"])


def test_upload_from_stdin_is_sent_chunked(bucket: Bucket, start_app: StartApp) -> None:
    app = start_app(bucket, part_size=PART)
    data = b"".join(generated_chunks(0, 7 * MiB + 3))
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "upload", "-", "--stdin-filename", "dump.bin"],
        cwd=ROOT,
        # The URL from the environment this time.
        env=service_environment({**NO_PROXY, "UPLOAD_URL": app.url}),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = proc.communicate(data, timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, err
    stored = json.loads(out)["files"][0]
    assert stored["filename"] == "dump.bin"
    assert stored["size"] == len(data)
    # No Content-Length: the service could not know the size, so it went multipart.
    assert stored["strategy"] == "multipart"
    assert stored["sha256"] == hashlib.sha256(data).hexdigest()
    assert bucket.sha256(stored["key"]) == stored["sha256"]


def test_a_wrong_token_exits_1_with_the_message_on_stderr(
    bucket: Bucket, start_app: StartApp, tmp_path: Path
) -> None:
    app = start_app(bucket, part_size=PART, env={"UPLOAD_AUTH_TOKENS": TOKEN})
    path = tmp_path / "a.txt"
    path.write_text("hello")
    refused = cli(
        "upload", str(path), "--url", app.url, env={"UPLOAD_TOKEN": "wrong-token-0123456789"}
    )
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert "HTTP 401 unauthorized" in refused.stderr
    bucket.assert_clean()
    accepted = cli("upload", str(path), "--url", app.url, env={"UPLOAD_TOKEN": TOKEN})
    assert accepted.returncode == 0, accepted.stderr
    assert json.loads(accepted.stdout)["files"][0]["size"] == 5


def expected_sha(index: int, size: int) -> str:
    digest = hashlib.sha256()
    plan = LoadPlan("http://unused", concurrency=1, size=size, count=1)
    for chunk in generated_chunks(plan.file_seed(index), size):
        digest.update(chunk)
    return digest.hexdigest()


def test_loadtest_verifies_every_upload_and_reports_the_servers_memory(
    bucket: Bucket, start_app: StartApp
) -> None:
    app = start_app(bucket, part_size=PART, env={"UPLOAD_MULTIPART_THRESHOLD": "5MiB"})
    size = 8 * MiB
    result = cli(
        "loadtest",
        "--url",
        app.url,
        "--concurrency",
        "4",
        "--count",
        "8",
        "--size",
        "8MiB",
        "--pid",
        str(app.pid),
        "--json",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert summary["requests"]["ok"] == 8
    assert summary["requests"]["failures"] == {}
    assert summary["integrity"] == {"verified": 8, "mismatches": 0}
    assert summary["latency_seconds"]["p99"] > 0
    assert summary["completion_lag_seconds"]["max"] > 0
    (memory,) = summary["server_memory"]
    assert memory["source"] == f"pid {app.pid}"
    assert memory["samples"] >= 2
    assert memory["peak"] >= memory["start"] > 10 * MiB
    # Independently of the answers: storage holds each generated file, byte for byte.
    keys = bucket.keys()
    assert len(keys) == 8
    for key in keys:
        index = int(key.rsplit("load-", 1)[1].removesuffix(".bin"))
        assert bucket.sha256(key) == expected_sha(index, size)
    assert bucket.incomplete_uploads() == []


def test_loadtest_with_a_duration_stops_by_itself(bucket: Bucket, start_app: StartApp) -> None:
    app = start_app(bucket, part_size=PART)
    started = time.monotonic()
    result = cli(
        "loadtest",
        "--url",
        app.url,
        "--concurrency",
        "2",
        "--size",
        "1MiB",
        "--duration",
        "2",
        "--metrics-url",
        f"{app.url}/metrics",
    )
    took = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    assert took < 30  # 2 s of load, interpreter start-up, requests in flight finishing
    assert "0 failed, 0 cancelled" in result.stdout
    assert "integrity:" in result.stdout and "0 mismatches" in result.stdout
    # /metrics may or may not exist yet: either way the run reports and passes.
    assert f"server RSS:      {app.url}/metrics" in result.stdout
