"""`python -m app upload FILE...`: send files to the service as one streamed multipart request.

Files are read a chunk at a time while the request goes out, never whole. Regular files (stdin
too, when redirected from one) have known sizes, so the request carries an exact
Content-Length; a pipe on `-` or a FIFO makes it chunked. The service's JSON answer goes to
stdout; the exit status is 0 for a 2xx answer and 1 otherwise, with the error on stderr, so
scripts can `| jq` the answer and test `$?`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import mimetypes
import os
import stat
import sys
import time
from collections.abc import Iterator, Sequence
from typing import BinaryIO, TextIO

import httpx

from app.client import resumable
from app.client.formbody import CHUNK_SIZE, FileSizeChanged, FormField, FormFile, MultipartBody
from app.client.progress import StatusLine, format_bytes, format_clock, format_rate, transfer_status
from app.client.resumestate import default_state_dir
from app.client.urls import UsageError, endpoint_url
from app.units import parse_size

#: Seconds any one network read or write may wait. Generous: the service pauses reading
#: while a part goes to storage, and answers only after the last part is stored.
DEFAULT_TIMEOUT = 300.0


def upload_url(url: str) -> str:
    """`url`, with `/uploads` added when it names only a server (`http://host:8000`)."""
    return endpoint_url(url, "/uploads")


def parse_field(text: str) -> FormField:
    """`NAME=VALUE` (the value may contain `=`)."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise UsageError(f"--field wants NAME=VALUE, got {text!r}")
    return FormField(name, value)


def remaining_size(stream: BinaryIO) -> int | None:
    """Bytes left in a regular file; None for a pipe, a terminal or a socket."""
    try:
        info = os.fstat(stream.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None
        return max(0, info.st_size - stream.tell())
    except (OSError, ValueError, io.UnsupportedOperation):
        return None


def read_chunks(stream: BinaryIO) -> Iterator[bytes]:
    # read1 returns what a pipe has now instead of waiting for a whole chunk, so a slow
    # producer still sends bytes often enough for the service's idle timeout.
    read = getattr(stream, "read1", stream.read)
    while chunk := read(CHUNK_SIZE):
        yield chunk


def file_parts(
    paths: Sequence[str],
    *,
    field: str,
    stdin: BinaryIO,
    stdin_filename: str,
    opened: contextlib.ExitStack,
) -> list[FormFile]:
    """One part per path, all opened now so a missing file fails before anything is sent."""
    if list(paths).count("-") > 1:
        raise UsageError("stdin (-) can be uploaded only once per request")
    parts = []
    for path in paths:
        if path == "-":
            stream, filename = stdin, stdin_filename
        else:
            stream = opened.enter_context(open(path, "rb"))  # noqa: SIM115 - closed by `opened`
            filename = os.path.basename(path)
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        parts.append(
            FormFile(field, filename, read_chunks(stream), remaining_size(stream), content_type)
        )
    return parts


def send(
    url: str,
    body: MultipartBody,
    *,
    token: str | None,
    timeout: float,
    status: StatusLine | None = None,
    transport: httpx.BaseTransport | None = None,
) -> tuple[httpx.Response, int, float]:
    """POST the body, showing progress on `status`; the answer, bytes sent and seconds taken."""
    # JSON, whatever httpx's default Accept: the service answers browsers' forms with HTML.
    headers = {**body.headers(), "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    total = body.content_length
    started = time.monotonic()
    sent = 0

    def counted() -> Iterator[bytes]:
        nonlocal sent
        for chunk in body.chunks():
            yield chunk
            sent += len(chunk)  # after the yield: httpx has written it
            if status is not None:
                status.show(transfer_status(sent, total, time.monotonic() - started))
        if status is not None and status.tty:
            # The service stores the last part before it answers: say why nothing moves.
            elapsed = time.monotonic() - started
            status.show(
                f"{transfer_status(sent, total, elapsed)}  waiting for the answer", force=True
            )

    client = httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0), transport=transport)
    with client:
        response = client.post(url, content=counted(), headers=headers)
    return response, sent, time.monotonic() - started


def error_message(response: httpx.Response) -> str:
    """`HTTP 401 unauthorized: ...` from the service's JSON error, or the raw answer."""
    try:
        error = response.json()["error"]
        return f"HTTP {response.status_code} {error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        text = response.text.strip()[:500] or response.reason_phrase
        return f"HTTP {response.status_code}: {text}"


def run(
    args: argparse.Namespace,
    *,
    stdin: BinaryIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    transport: httpx.BaseTransport | None = None,
) -> int:
    """The `upload` command; returns the exit status."""
    if args.resumable:
        return resumable.run(args, stdout=stdout, stderr=stderr, transport=transport)
    stdin = stdin or sys.stdin.buffer
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    with contextlib.ExitStack() as opened:
        try:
            if not args.url:
                raise UsageError("no URL: give --url or set UPLOAD_URL")
            url = upload_url(args.url)
            fields = [parse_field(text) for text in args.field]
            files = file_parts(
                args.files,
                field=args.file_field,
                stdin=stdin,
                stdin_filename=args.stdin_filename,
                opened=opened,
            )
        except UsageError as exc:
            print(f"upload: {exc}", file=stderr)
            return 2
        except OSError as exc:
            print(f"upload: cannot read {exc.filename}: {exc.strerror}", file=stderr)
            return 1
        status = None if args.quiet else StatusLine(stderr)
        try:
            response, sent, seconds = send(
                url,
                MultipartBody(fields, files),
                token=args.token,
                timeout=args.timeout,
                status=status,
                transport=transport,
            )
        except (httpx.HTTPError, FileSizeChanged, OSError) as exc:
            if status is not None:
                status.close()
            print(f"upload failed: {type(exc).__name__}: {exc}", file=stderr)
            return 1
    if status is not None:
        rate = format_rate(sent / seconds if seconds > 0 else 0.0)
        status.close(f"sent {format_bytes(sent)} in {format_clock(seconds)} ({rate})")
    if response.is_success:
        text = response.text
        stdout.write(text if text.endswith("\n") else text + "\n")
        stdout.flush()
        return 0
    print(f"upload failed: {error_message(response)}", file=stderr)
    return 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="a file to send; - is stdin")
    parser.add_argument(
        "--url",
        default=os.environ.get("UPLOAD_URL"),
        help="the service, e.g. http://127.0.0.1:8000 (/uploads is added, /files/ with "
        "--resumable) (env UPLOAD_URL)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("UPLOAD_TOKEN"),
        help="bearer token; prefer the env UPLOAD_TOKEN, which `ps` does not show",
    )
    parser.add_argument(
        "--field",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a text field, sent before the files (repeatable)",
    )
    parser.add_argument(
        "--file-field", default="file", metavar="NAME", help="form field of the files (file)"
    )
    parser.add_argument(
        "--stdin-filename",
        default="stdin",
        metavar="NAME",
        help="filename sent for - (stdin)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds one network read or write may wait ({DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    resuming = parser.add_argument_group(
        "resumable uploads", "one file over tus 1.0, continued by a later run if interrupted"
    )
    resuming.add_argument(
        "--resumable",
        action="store_true",
        help="send FILE in chunks to /files/, resuming an unfinished upload of it",
    )
    resuming.add_argument(
        "--chunk-size",
        type=size_argument,
        default=resumable.DEFAULT_CHUNK_SIZE,
        metavar="SIZE",
        help="bytes per PATCH request (64MiB): at most what a failure sends again",
    )
    resuming.add_argument(
        "--retries",
        type=int,
        default=7,
        metavar="N",
        help="retries in a row without progress, pausing 1, 2, 4 ... 30 s (7)",
    )
    resuming.add_argument(
        "--state-dir",
        default=str(default_state_dir()),
        metavar="DIR",
        help="where unfinished uploads are remembered (~/.cache/streaming-upload/resumable)",
    )


def size_argument(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
