"""The upload CLI (app/client/upload.py) against httpx.MockTransport: what it sends, what it prints,
its exit status. tests/e2e/test_client_cli.py runs it as a process against a real service."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from app.client import upload as client
from app.forms.multipart import MultipartStream, PartEnd, PartStart


def parse_request(request: httpx.Request) -> tuple[dict[str, str], dict[str, bytes]]:
    """The fields and files of a multipart request, read as the service reads them."""
    stream = MultipartStream(request.headers, max_part_header_bytes=16384)
    fields: dict[str, str] = {}
    files: dict[str, bytes] = {}
    part: PartStart | None = None
    data = bytearray()
    for event in stream.feed(request.read()):
        if isinstance(event, PartStart):
            part, data = event, bytearray()
        elif isinstance(event, PartEnd):
            assert part is not None
            if part.filename is None:
                fields[part.field] = data.decode()
            else:
                files[part.filename] = bytes(data)
        else:
            data += event
    stream.finish()
    return fields, files


def answering(
    seen: list[httpx.Request], status: int = 201, body: object = None
) -> Callable[[httpx.Request], httpx.Response]:
    def handle(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        if body is not None:
            return httpx.Response(status, json=body)
        _, files = parse_request(request)
        return httpx.Response(
            status,
            json={
                "files": [
                    {"filename": n, "sha256": hashlib.sha256(d).hexdigest(), "size": len(d)}
                    for n, d in files.items()
                ],
                "fields": {},
            },
        )

    return handle


def args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    client.add_arguments(parser)
    return parser.parse_args(list(argv))


def run(
    namespace: argparse.Namespace,
    handler: Callable[[httpx.Request], httpx.Response],
    stdin: bytes = b"",
) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = client.run(
        namespace,
        stdin=io.BytesIO(stdin),
        stdout=out,
        stderr=err,
        transport=httpx.MockTransport(handler),
    )
    return status, out.getvalue(), err.getvalue()


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    small = tmp_path / 'say "hi".txt'
    small.write_text("hello\n")
    return big, small


def test_sends_files_and_fields_with_an_exact_content_length(files: tuple[Path, Path]) -> None:
    big, small = files
    seen: list[httpx.Request] = []
    status, out, err = run(
        args(str(big), str(small), "--url", "http://svc", "--field", "title=a=b", "--token", "t"),
        answering(seen),
    )
    assert status == 0, err
    (request,) = seen
    assert request.url == "http://svc/uploads"
    assert request.headers["authorization"] == "Bearer t"
    assert request.headers["accept"] == "application/json"  # not the HTML answer for forms
    assert int(request.headers["content-length"]) == len(request.content)
    assert "transfer-encoding" not in request.headers
    fields, sent = parse_request(request)
    assert fields == {"title": "a=b"}
    assert sent == {"big.bin": big.read_bytes(), 'say "hi".txt': b"hello\n"}
    answer = json.loads(out)
    assert [f["filename"] for f in answer["files"]] == ["big.bin", 'say "hi".txt']
    assert out.endswith("\n")
    assert "sent 3.0 MiB" in err  # the final progress line (stderr is not a tty here)


def test_content_types_are_guessed_from_the_filename(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"\x89PNG")
    (tmp_path / "b.unknownext").write_bytes(b"?")
    with contextlib.ExitStack() as opened:
        parts = client.file_parts(
            [str(tmp_path / "a.png"), str(tmp_path / "b.unknownext")],
            field="file",
            stdin=io.BytesIO(),
            stdin_filename="stdin",
            opened=opened,
        )
    assert [p.content_type for p in parts] == ["image/png", "application/octet-stream"]
    assert [p.size for p in parts] == [4, 1]


def test_stdin_is_sent_chunked(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []
    status, _, err = run(
        args("-", "--url", "http://svc/up", "--stdin-filename", "log.txt", "-q"),
        answering(seen),
        stdin=b"line\n" * 1000,
    )
    assert status == 0, err
    assert err == ""  # --quiet
    (request,) = seen
    assert request.url == "http://svc/up"
    assert "content-length" not in request.headers
    assert request.headers["transfer-encoding"] == "chunked"
    assert parse_request(request)[1] == {"log.txt": b"line\n" * 1000}


def test_a_pipe_has_no_known_size() -> None:
    read, write = os.pipe()
    with os.fdopen(read, "rb") as pipe, os.fdopen(write, "wb"):
        assert client.remaining_size(pipe) is None
    assert client.remaining_size(io.BytesIO(b"abc")) is None


def test_a_regular_file_size_counts_from_the_current_position(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    with path.open("rb") as stream:
        stream.read(4)
        assert client.remaining_size(stream) == 6


def test_an_error_answer_exits_1_with_the_message_on_stderr(files: tuple[Path, Path]) -> None:
    error = {"error": {"code": "unauthorized", "message": "a valid bearer token is required"}}
    status, out, err = run(args(str(files[1]), "--url", "http://svc"), answering([], 401, error))
    assert status == 1
    assert out == ""
    assert "HTTP 401 unauthorized: a valid bearer token is required" in err


def test_a_non_json_error_answer_is_shown_raw(files: tuple[Path, Path]) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>Bad Gateway</html>")

    status, _, err = run(args(str(files[1]), "--url", "http://svc"), handle)
    assert status == 1
    assert "HTTP 502: <html>Bad Gateway</html>" in err


def test_a_transport_error_exits_1(files: tuple[Path, Path]) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    status, out, err = run(args(str(files[1]), "--url", "http://svc"), handle)
    assert (status, out) == (1, "")
    assert "upload failed: ConnectError: connection refused" in err


def test_a_file_that_grows_while_sent_fails_the_upload(tmp_path: Path) -> None:
    path = tmp_path / "growing.log"
    path.write_bytes(b"a" * 100)

    class Growing(httpx.BaseTransport):
        # Not MockTransport: that reads the whole body before its handler runs.
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            with path.open("ab") as more:
                more.write(b"b" * 100)  # after the Content-Length was computed
            request.read()
            return httpx.Response(201, json={})

    err = io.StringIO()
    status = client.run(
        args(str(path), "--url", "http://svc"),
        stdout=io.StringIO(),
        stderr=err,
        transport=Growing(),
    )
    assert status == 1
    assert "FileSizeChanged: growing.log: more than 100 bytes" in err.getvalue()


def test_a_missing_file_fails_before_anything_is_sent(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []
    status, _, err = run(args(str(tmp_path / "nope"), "--url", "http://svc"), answering(seen))
    assert (status, seen) == (1, [])
    assert "cannot read" in err and "nope" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["a"], "no URL"),
        (["a", "--url", "ftp://svc"], "not an http(s) URL"),
        (["a", "--url", "http://svc", "--field", "novalue"], "NAME=VALUE"),
        (["-", "-", "--url", "http://svc"], "only once"),
    ],
)
def test_usage_errors_exit_2(
    argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("UPLOAD_URL", raising=False)
    seen: list[httpx.Request] = []
    status, _, err = run(args(*argv), answering(seen))
    assert (status, seen) == (2, [])
    assert message in err


def test_url_and_token_fall_back_to_the_environment(
    files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UPLOAD_URL", "http://from-env:9000")
    monkeypatch.setenv("UPLOAD_TOKEN", "env-token-0123456789")
    seen: list[httpx.Request] = []
    status, _, err = run(args(str(files[1])), answering(seen))
    assert status == 0, err
    assert seen[0].url == "http://from-env:9000/uploads"
    assert seen[0].headers["authorization"] == "Bearer env-token-0123456789"


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("http://h:8000", "http://h:8000/uploads"),
        ("http://h:8000/", "http://h:8000/uploads"),
        ("https://h/api/uploads?x=1", "https://h/api/uploads?x=1"),
    ],
)
def test_upload_url(given: str, used: str) -> None:
    assert client.upload_url(given) == used
