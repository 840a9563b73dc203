"""`upload --resumable` (app/client/resumable.py) against an in-memory tus 1.0 server behind
httpx.MockTransport: the requests it makes, how it retries and resumes, what it prints.

The fake server verifies each PATCH's Upload-Checksum as the service does, and lets a test
inject the faults a real server cannot produce on demand (a dropped connection, 423, 5xx).
tests/e2e/test_client_resumable.py runs the command as a process against the real service.
"""

from __future__ import annotations

import argparse
import base64
import collections
import hashlib
import io
import json
import os
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from app.client import resumable, upload
from app.client.resumestate import FileIdentity, ResumeState, UploadRecord

Fault = int | Callable[[httpx.Request], Exception]


class FakeTusServer:
    """Uploads held in memory at http://svc/files/<n>. `faults` holds what the next PATCHes
    get instead of being handled: a status, or an exception to raise (a network error)."""

    def __init__(self) -> None:
        self.uploads: dict[str, bytearray] = {}
        self.lengths: dict[str, int] = {}
        self.metadata: dict[str, str] = {}
        self.requests: list[tuple[str, str, int | None]] = []  # method, path, Upload-Offset
        self.faults: collections.deque[Fault] = collections.deque()
        self.patch_bytes = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        offset = request.headers.get("upload-offset")
        self.requests.append(
            (request.method, request.url.path, int(offset) if offset is not None else None)
        )
        assert request.headers["tus-resumable"] == "1.0.0"
        if request.method == "POST":
            name = f"/files/{len(self.uploads) + 1}"
            self.uploads[name] = bytearray()
            self.lengths[name] = int(request.headers["upload-length"])
            self.metadata[name] = request.headers.get("upload-metadata", "")
            answer: dict[str, object] = {"id": name, "offset": 0, "length": self.lengths[name]}
            if self.lengths[name] == 0:  # complete at once: the answer describes the object
                answer["object"] = {"key": f"uploads{name}/empty", "size": 0}
            return httpx.Response(
                201, headers={"Location": name, "Upload-Offset": "0"}, json=answer
            )
        path = request.url.path
        if path not in self.uploads:
            return httpx.Response(404, json={"error": {"code": "not_found", "message": "gone"}})
        held = self.uploads[path]
        if request.method == "HEAD":
            return httpx.Response(200, headers={"Upload-Offset": str(len(held))})
        if request.method == "GET":  # what the service says of the upload, as JSON
            length = self.lengths[path]
            answer = {"id": path, "offset": len(held), "length": length}
            if len(held) == length:
                answer["object"] = {
                    "key": f"uploads{path}/file",
                    "size": length,
                    "sha256": hashlib.sha256(held).hexdigest(),
                }
            return httpx.Response(200, json=answer)
        assert request.method == "PATCH"
        assert request.headers["content-type"] == "application/offset+octet-stream"
        if self.faults:
            fault = self.faults.popleft()
            if isinstance(fault, int):
                return httpx.Response(fault, json={"error": {"code": "x", "message": "fault"}})
            raise fault(request)
        self.patch_bytes += len(body)
        if int(offset or -1) != len(held):
            return httpx.Response(
                409,
                headers={"Upload-Offset": str(len(held))},
                json={"error": {"code": "offset_mismatch", "message": "offset"}},
            )
        algorithm, digest = request.headers["upload-checksum"].split(" ")
        assert algorithm == "sha256"
        if base64.b64decode(digest) != hashlib.sha256(body).digest():
            return httpx.Response(460, json={"error": {"code": "checksum_mismatch", "message": ""}})
        held += body
        return httpx.Response(204, headers={"Upload-Offset": str(len(held))})


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    upload.add_arguments(parser)
    parser.set_defaults(url="http://svc")
    return parser.parse_args(list(argv))


def run(
    server: Callable[[httpx.Request], httpx.Response], state_dir: Path, *argv: str
) -> tuple[int, str, str, list[float]]:
    """`upload --resumable ARGV` against `server`; exit status, stdout, stderr, pauses made
    (recorded, not slept)."""
    pauses: list[float] = []
    out, err = io.StringIO(), io.StringIO()
    status = resumable.run(
        parse(*argv, "--resumable", "--state-dir", str(state_dir)),
        stdout=out,
        stderr=err,
        transport=httpx.MockTransport(server),
        sleep=pauses.append,
    )
    return status, out.getvalue(), err.getvalue(), pauses


@pytest.fixture
def data() -> bytes:
    return os.urandom(1000)


@pytest.fixture
def path(tmp_path: Path, data: bytes) -> Path:
    file = tmp_path / "clip é.mp4"
    file.write_bytes(data)
    return file


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


def test_the_file_goes_in_checksummed_chunks_after_an_empty_creation(
    path: Path, state_dir: Path, data: bytes
) -> None:
    server = FakeTusServer()
    status, out, err, pauses = run(server, state_dir, str(path), "--chunk-size", "300")
    assert status == 0, err
    assert server.requests == [
        ("POST", "/files/", None),
        ("PATCH", "/files/1", 0),
        ("PATCH", "/files/1", 300),
        ("PATCH", "/files/1", 600),
        ("PATCH", "/files/1", 900),
        ("GET", "/files/1", None),  # the stored object: tus's last PATCH answers 204
    ]
    assert server.uploads["/files/1"] == data
    assert server.lengths["/files/1"] == 1000
    assert server.metadata["/files/1"] == resumable.encode_metadata(
        {"filename": "clip é.mp4", "filetype": "video/mp4"}
    )
    assert pauses == []
    answer = json.loads(out)  # the service's GET, as it describes the stored object
    assert answer["object"] == {
        "key": "uploads/files/1/file",
        "size": 1000,
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    assert list(state_dir.iterdir()) == []  # the record is removed once the upload is complete
    assert "sent 1000 B" in err


def test_the_token_goes_on_every_request(path: Path, state_dir: Path) -> None:
    seen: list[str | None] = []
    server = FakeTusServer()

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return server(request)

    status, _, err, _ = run(handle, state_dir, str(path), "--url", "http://svc/", "--token", "t0k")
    assert status == 0, err
    assert seen == ["Bearer t0k", "Bearer t0k", "Bearer t0k"]  # POST, PATCH, GET


def test_a_dropped_connection_is_retried_from_the_servers_offset(
    path: Path, state_dir: Path, data: bytes
) -> None:
    server = FakeTusServer()
    server.faults.extend([lambda request: httpx.WriteError("connection reset", request=request)])
    status, _, err, pauses = run(server, state_dir, str(path), "--chunk-size", "600")
    assert status == 0, err
    assert [r[0] for r in server.requests] == ["POST", "PATCH", "HEAD", "PATCH", "PATCH", "GET"]
    assert server.requests[2:] == [
        ("HEAD", "/files/1", None),
        ("PATCH", "/files/1", 0),
        ("PATCH", "/files/1", 600),
        ("GET", "/files/1", None),
    ]
    assert pauses == [1.0]
    assert "connection reset; retrying in 1 s" in err
    assert server.uploads["/files/1"] == data


@pytest.mark.parametrize("fault", [409, 423, 460, 500, 503])
def test_retryable_answers_back_off_then_continue(
    path: Path, state_dir: Path, data: bytes, fault: int
) -> None:
    server = FakeTusServer()
    server.faults.extend([fault, fault, fault])
    status, _, err, pauses = run(server, state_dir, str(path))
    assert status == 0, err
    assert pauses == [1.0, 2.0, 4.0]  # doubling
    assert server.uploads["/files/1"] == data
    assert f"HTTP {fault} x: fault; retrying in 4 s" in err


def test_a_lost_answer_continues_from_the_offset_head_reports(
    path: Path, state_dir: Path, data: bytes
) -> None:
    """The first PATCH is stored but its answer never arrives: HEAD says 400 bytes are
    there, and the client continues from 400, not 0."""
    server = FakeTusServer()

    def handle(request: httpx.Request) -> httpx.Response:
        response = server(request)
        if request.method == "PATCH" and server.requests[-1][2] == 0:
            raise httpx.ReadError("connection closed", request=request)
        return response

    status, _, err, pauses = run(handle, state_dir, str(path), "--chunk-size", "400")
    assert status == 0, err
    assert server.requests[1:] == [
        ("PATCH", "/files/1", 0),
        ("HEAD", "/files/1", None),
        ("PATCH", "/files/1", 400),
        ("PATCH", "/files/1", 800),
        ("GET", "/files/1", None),
    ]
    assert pauses == [1.0]
    assert server.patch_bytes == len(data)  # nothing sent twice
    assert server.uploads["/files/1"] == data


def test_failed_heads_go_on_with_the_same_backoff(path: Path, state_dir: Path, data: bytes) -> None:
    """The network is down for a while: the PATCH fails, then two HEADs; the pauses keep
    doubling across them."""
    server = FakeTusServer()
    server.faults.append(lambda request: httpx.ConnectError("unreachable", request=request))
    heads = 0

    def handle(request: httpx.Request) -> httpx.Response:
        nonlocal heads
        if request.method == "HEAD":
            heads += 1
            if heads <= 2:
                raise httpx.ConnectError("unreachable", request=request)
        return server(request)

    status, _, err, pauses = run(handle, state_dir, str(path))
    assert status == 0, err
    assert pauses == [1.0, 2.0, 4.0]
    assert server.uploads["/files/1"] == data


def test_ctrl_c_keeps_the_record_for_the_next_run(path: Path, state_dir: Path) -> None:
    server = FakeTusServer()

    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH":
            raise KeyboardInterrupt
        return server(request)

    status, out, err, _ = run(handle, state_dir, str(path))
    assert (status, out) == (130, "")
    assert "upload: interrupted; the same command continues the upload" in err
    record = ResumeState(state_dir).find("http://svc/files/", FileIdentity.of(path))
    assert record is not None and record.url == "http://svc/files/1"


def test_too_many_failures_in_a_row_give_up_and_keep_the_record(
    path: Path, state_dir: Path
) -> None:
    server = FakeTusServer()
    server.faults.extend([503] * 10)
    status, out, err, pauses = run(server, state_dir, str(path), "--retries", "3")
    assert (status, out) == (1, "")
    assert pauses == [1.0, 2.0, 4.0]
    assert "upload failed: giving up after 4 failures in a row; last: HTTP 503 x: fault" in err
    # The next run can continue this upload.
    assert ResumeState(state_dir).find("http://svc/files/", FileIdentity.of(path)) is not None


def test_a_recorded_upload_is_continued_where_the_server_stands(
    path: Path, state_dir: Path, data: bytes
) -> None:
    server = FakeTusServer()
    server.uploads["/files/7"] = bytearray(data[:700])
    server.lengths["/files/7"] = len(data)
    ResumeState(state_dir).save(
        UploadRecord("http://svc/files/", FileIdentity.of(path), "http://svc/files/7")
    )
    status, _, err, _ = run(server, state_dir, str(path), "--chunk-size", "200")
    assert status == 0, err
    assert server.requests == [
        ("HEAD", "/files/7", None),
        ("PATCH", "/files/7", 700),
        ("PATCH", "/files/7", 900),
        ("GET", "/files/7", None),
    ]
    assert server.patch_bytes == 300
    assert server.uploads["/files/7"] == data
    assert "resuming http://svc/files/7 at 700 B of 1000 B" in err
    assert list(state_dir.iterdir()) == []


def test_a_recorded_upload_the_server_forgot_starts_again(
    path: Path, state_dir: Path, data: bytes
) -> None:
    server = FakeTusServer()
    ResumeState(state_dir).save(
        UploadRecord("http://svc/files/", FileIdentity.of(path), "http://svc/files/gone")
    )
    status, _, err, _ = run(server, state_dir, str(path))
    assert status == 0, err
    assert [r[:2] for r in server.requests] == [
        ("HEAD", "/files/gone"),
        ("POST", "/files/"),
        ("PATCH", "/files/1"),
        ("GET", "/files/1"),
    ]
    assert "http://svc/files/gone is gone (expired or removed): starting a new upload" in err
    assert server.uploads["/files/1"] == data


def test_a_refusal_is_not_retried(path: Path, state_dir: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        error = {"error": {"code": "unauthorized", "message": "a valid bearer token is required"}}
        return httpx.Response(401, json=error)

    status, out, err, pauses = run(refuse, state_dir, str(path))
    assert (status, out, pauses) == (1, "", [])
    assert "upload failed: HTTP 401 unauthorized: a valid bearer token is required" in err
    assert not state_dir.exists()


def test_a_file_changed_during_the_upload_fails_it(path: Path, state_dir: Path) -> None:
    server = FakeTusServer()

    def handle(request: httpx.Request) -> httpx.Response:
        response = server(request)
        if request.method == "PATCH":
            with path.open("ab") as more:
                more.write(b"more")
        return response

    status, _, err, _ = run(handle, state_dir, str(path), "--chunk-size", "500")
    assert status == 1
    assert "changed since the upload began" in err
    assert len(server.uploads["/files/1"]) == 500  # nothing after the change was sent


def test_an_empty_file_is_complete_at_creation(tmp_path: Path, state_dir: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    server = FakeTusServer()
    status, out, err, _ = run(server, state_dir, str(empty))
    assert status == 0, err
    assert server.requests == [("POST", "/files/", None)]
    # The creation's answer, which describes the stored object, is what is printed.
    assert json.loads(out)["object"] == {"key": "uploads/files/1/empty", "size": 0}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["a", "b"], "--resumable sends one file"),
        (["-"], "--resumable sends one file"),
        (["a", "--field", "x=y"], "--field is not sent with --resumable"),
        (["a", "--chunk-size", "0"], "--chunk-size must be at least 1 byte"),
    ],
)
def test_usage_errors_exit_2(argv: list[str], message: str, state_dir: Path) -> None:
    server = FakeTusServer()
    status, _, err, _ = run(server, state_dir, *argv)
    assert (status, server.requests) == (2, [])
    assert message in err


def test_a_server_url_gets_files_added() -> None:
    assert resumable.files_url("http://h:8000") == "http://h:8000/files/"
    assert resumable.files_url("https://h/") == "https://h/files/"
    assert resumable.files_url("http://h/api/files/") == "http://h/api/files/"
    with pytest.raises(resumable.UsageError):
        resumable.files_url("ftp://h")


def test_metadata_is_tus_encoded() -> None:
    assert resumable.encode_metadata({"filename": "a b.txt", "filetype": "text/plain"}) == (
        "filename YSBiLnR4dA==,filetype dGV4dC9wbGFpbg=="
    )


def test_the_checksum_covers_exactly_the_range(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"0123hello world89")
    with path.open("rb") as stream:
        # tus's example, with sha256: `hello world` at offset 4.
        expected = base64.b64encode(hashlib.sha256(b"hello world").digest()).decode()
        assert resumable.range_checksum(stream, 4, 11) == f"sha256 {expected}"
        with pytest.raises(resumable.FileChanged):
            list(resumable.read_range(stream, 10, 100))


def test_read_range_reads_a_bounded_piece_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(os.urandom(3 * resumable.CHUNK_SIZE + 5))
    with path.open("rb") as stream:
        pieces = list(resumable.read_range(stream, 3, 2 * resumable.CHUNK_SIZE + 1))
    assert [len(p) for p in pieces] == [resumable.CHUNK_SIZE, resumable.CHUNK_SIZE, 1]


def test_backoff_doubles_up_to_its_cap() -> None:
    backoff = resumable.Backoff(first=1.0, cap=30.0)
    assert [backoff.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
