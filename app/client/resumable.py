"""`python -m app upload --resumable FILE`: one file sent over tus 1.0 to `/files/`, in chunks,
continuing where an interrupted run stopped.

The upload is created with an empty POST (so its URL is known and recorded before any byte
goes), then the file goes in PATCH requests of `--chunk-size` bytes streamed from disk. Each
PATCH carries `Upload-Checksum: sha256 ...` of its chunk: the header precedes the body, so a
chunk is read once to hash it and once more to send it, and never held in memory whole. The
service drops a checksummed PATCH that is cut off or damaged whole, so the offset it reports
is always bytes it verified.

Network errors, 5xx, 409 (offset mismatch), 423 (another request holds the upload) and 460
(checksum mismatch) are retried after a growing pause: ask the server's offset (HEAD), then
continue from there. A run killed outright leaves the upload's URL in the state file
(app/client/resumestate.py); the next run for the same unchanged file asks its offset and
continues. The output and exit status are as for `python -m app upload`.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import json
import mimetypes
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO, TextIO, TypeVar

import httpx

from app.client.formbody import CHUNK_SIZE
from app.client.progress import StatusLine, format_bytes, format_clock, format_rate, transfer_status
from app.client.resumestate import FileIdentity, ResumeState, UploadRecord
from app.client.urls import UsageError, endpoint_url
from app.units import MiB

TUS_VERSION = "1.0.0"
#: Bytes per PATCH: what a failed request costs to send again, and one request's overhead.
DEFAULT_CHUNK_SIZE = 64 * MiB
OFFSET_OCTET_STREAM = "application/offset+octet-stream"
#: Answers after which the same request may succeed: the server's offset is asked again.
RETRYABLE_STATUSES = frozenset({408, 409, 423, 429, 460})

T = TypeVar("T")


class UploadFailed(Exception):
    """The upload cannot go on: an answer no retry will change, or too many failures."""


class UploadGone(UploadFailed):
    """The server no longer knows the upload (404, or 410 once expired)."""


class Retry(Exception):
    """A failure after which asking the server's offset and trying again may succeed."""


class FileChanged(UploadFailed):
    """The file is not the one the upload began with (size or modification time differ)."""


def files_url(url: str) -> str:
    """`url`, with `/files/` added when it names only a server (`http://host:8000`)."""
    return endpoint_url(url, "/files/")


def encode_metadata(metadata: Mapping[str, str]) -> str:
    """tus `Upload-Metadata`: `key base64(value)` pairs joined by commas."""
    return ",".join(
        f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in metadata.items()
    )


def read_range(stream: BinaryIO, offset: int, size: int) -> Iterator[bytes]:
    """`size` bytes from `offset`, a CHUNK_SIZE at a time; FileChanged if the file is shorter."""
    stream.seek(offset)
    left = size
    while left:
        data = stream.read(min(CHUNK_SIZE, left))
        if not data:
            raise FileChanged(f"the file ended {left} bytes early: it changed during the upload")
        left -= len(data)
        yield data


def range_checksum(stream: BinaryIO, offset: int, size: int) -> str:
    """`sha256 <base64 digest>` of the range, as tus's `Upload-Checksum` carries it."""
    digest = hashlib.sha256()
    for data in read_range(stream, offset, size):
        digest.update(data)
    return f"sha256 {base64.b64encode(digest.digest()).decode()}"


@dataclasses.dataclass(frozen=True)
class Backoff:
    """Pauses before retrying: `first`, doubling up to `cap`; `attempts` failures in a row
    (without the offset moving) end the upload."""

    first: float = 1.0
    cap: float = 30.0
    attempts: int = 8

    def delay(self, failures: int) -> float:
        """The pause after the `failures`-th failure in a row (1-based)."""
        return float(min(self.cap, self.first * 2 ** (failures - 1)))


def error_message(response: httpx.Response) -> str:
    """`HTTP 409 offset_mismatch: ...` from the service's JSON error, or the status line."""
    try:
        error = response.json()["error"]
        return f"HTTP {response.status_code} {error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        text = response.text.strip()[:500] if response.content else ""
        return f"HTTP {response.status_code}: {text or response.reason_phrase}"


def check_answer(response: httpx.Response, expected: int) -> None:
    """Raise Retry, UploadGone or UploadFailed unless the status is `expected`."""
    status = response.status_code
    if status == expected:
        return
    if status >= 500 or status in RETRYABLE_STATUSES:
        raise Retry(error_message(response))
    if status in (404, 410):
        raise UploadGone(error_message(response))
    raise UploadFailed(error_message(response))


def header_int(response: httpx.Response, name: str) -> int:
    """A non-negative integer header the protocol requires on this answer."""
    value = response.headers.get(name, "")
    if not value.isdigit():
        raise UploadFailed(f"HTTP {response.status_code} without a valid {name} header")
    return int(value)


class TusClient:
    """The tus 1.0 requests, one method each; they raise as check_answer does."""

    def __init__(self, http: httpx.Client, token: str | None) -> None:
        self.http = http
        self.headers = {"Tus-Resumable": TUS_VERSION, "Accept": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def create(self, endpoint: str, length: int, metadata: Mapping[str, str]) -> httpx.Response:
        """POST: a new upload of `length` bytes; the answer carries its Location."""
        headers = {**self.headers, "Upload-Length": str(length)}
        if metadata:
            headers["Upload-Metadata"] = encode_metadata(metadata)
        response = self.http.post(endpoint, headers=headers)
        check_answer(response, 201)
        if "location" not in response.headers:
            raise UploadFailed("HTTP 201 without a Location header")
        return response

    def describe(self, url: str) -> httpx.Response:
        """GET: the upload as the service describes it, with the stored object once complete
        (a tus append answers 204, without a body)."""
        response = self.http.get(url, headers=self.headers)
        check_answer(response, 200)
        return response

    def offset(self, url: str) -> int:
        """HEAD: the bytes the server holds."""
        response = self.http.head(url, headers={**self.headers, "Cache-Control": "no-store"})
        check_answer(response, 200)
        return header_int(response, "Upload-Offset")

    def append(
        self,
        url: str,
        stream: BinaryIO,
        offset: int,
        size: int,
        on_sent: Callable[[int], None],
    ) -> httpx.Response:
        """PATCH `size` bytes of `stream` from `offset`, checksummed; `on_sent(n)` after each
        piece httpx has written."""
        headers = {
            **self.headers,
            "Content-Type": OFFSET_OCTET_STREAM,
            "Content-Length": str(size),
            "Upload-Offset": str(offset),
            "Upload-Checksum": range_checksum(stream, offset, size),
        }

        def body() -> Iterator[bytes]:
            for data in read_range(stream, offset, size):
                yield data
                on_sent(len(data))

        response = self.http.patch(url, content=body(), headers=headers)
        check_answer(response, 204)
        return response


def json_answer(response: httpx.Response) -> dict[str, Any] | None:
    try:
        answer = response.json()
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


@dataclasses.dataclass
class Progress:
    """What the status line shows: bytes the server holds plus those in flight."""

    size: int
    status: StatusLine | None
    started_at: int = 0  # the server's offset when this run began
    clock: Callable[[], float] = time.monotonic
    started: float = dataclasses.field(default_factory=time.monotonic)

    def show(self, position: int, note: str = "", *, force: bool = False) -> None:
        if self.status is None:
            return
        text = transfer_status(
            position, self.size, self.clock() - self.started, resumed_from=self.started_at
        )
        self.status.show(f"{text}  {note}" if note else text, force=force)


class ResumableUpload:
    """One file to one endpoint, from wherever the server's offset is to the end."""

    def __init__(
        self,
        tus: TusClient,
        endpoint: str,
        path: str,
        *,
        state: ResumeState,
        chunk_size: int,
        backoff: Backoff,
        sleep: Callable[[float], None] = time.sleep,
        log: Callable[[str], None] = lambda text: None,
    ) -> None:
        self.tus = tus
        self.endpoint = endpoint
        self.path = path
        self.state = state
        self.chunk_size = chunk_size
        self.backoff = backoff
        self.sleep = sleep
        self.log = log
        self.file = FileIdentity.of(path)
        self.sent = 0  # bytes this run sent in PATCH bodies (retries included)
        self.url = ""  # the upload's, once created or found

    def _create(self) -> tuple[str, int, httpx.Response]:
        name = os.path.basename(self.path)
        metadata = {
            "filename": name,
            "filetype": mimetypes.guess_type(name)[0] or "application/octet-stream",
        }
        response = self.tus.create(self.endpoint, self.file.size, metadata)
        url = str(response.url.join(response.headers["location"]))
        self.state.save(UploadRecord(self.endpoint, self.file, url))
        offset = response.headers.get("upload-offset", "0")
        return url, int(offset) if offset.isdigit() else 0, response

    def _start(self) -> tuple[str, int, httpx.Response | None]:
        """The recorded upload and its offset, or a new one."""
        record = self.state.find(self.endpoint, self.file)
        if record is not None:
            try:
                offset = self._retrying(lambda: self.tus.offset(record.url))
            except UploadGone:
                self.log(f"{record.url} is gone (expired or removed): starting a new upload")
            else:
                self.log(
                    f"resuming {record.url} at {format_bytes(offset)} "
                    f"of {format_bytes(self.file.size)}"
                )
                return record.url, offset, None
        return self._retrying(self._create)

    def _retrying(self, attempt: Callable[[], T], failed_before: int = 0) -> T:
        """`attempt()` until it succeeds, retrying transport errors and Retry answers; the
        pauses (and the count that gives up) go on from `failed_before` failures."""
        failures = failed_before
        while True:
            try:
                return attempt()
            except (httpx.TransportError, Retry) as exc:
                failures += 1
                self._pause(failures, exc)

    def _pause(self, failures: int, reason: Exception) -> None:
        text = str(reason) or type(reason).__name__
        if failures >= self.backoff.attempts:
            raise UploadFailed(f"giving up after {failures} failures in a row; last: {text}")
        delay = self.backoff.delay(failures)
        self.log(f"{text}; retrying in {delay:g} s")
        self.sleep(delay)

    def run(self, progress: Progress) -> httpx.Response | None:
        """Upload the rest of the file; the last answer (None if nothing was left to send)."""
        url, offset, last = self._start()
        self.url = url
        progress.started_at = offset
        progress.show(offset)
        failures = 0
        with open(self.path, "rb") as stream:
            while offset < self.file.size:
                if FileIdentity.of(self.path) != self.file:
                    raise FileChanged(f"{self.path} changed since the upload began")
                size = min(self.chunk_size, self.file.size - offset)
                try:
                    last = self._append(url, stream, offset, size, progress)
                    new_offset = header_int(last, "Upload-Offset")
                except (httpx.TransportError, Retry) as exc:
                    failures += 1
                    self._pause(failures, exc)
                    offset = self._retrying(lambda: self.tus.offset(url), failures)
                    progress.show(offset, "resumed", force=True)
                    continue
                if new_offset <= offset:
                    raise UploadFailed(f"the offset did not move past {offset}")
                offset, failures = new_offset, 0
        self.state.remove(self.endpoint, self.file)
        if last is None or "object" not in (json_answer(last) or {}):
            with contextlib.suppress(UploadFailed):  # stored all the same: say what we know
                last = self._retrying(lambda: self.tus.describe(url))
        return last

    def _append(
        self, url: str, stream: BinaryIO, offset: int, size: int, progress: Progress
    ) -> httpx.Response:
        position = offset

        def on_sent(n: int) -> None:
            nonlocal position
            position += n
            self.sent += n
            progress.show(position)

        return self.tus.append(url, stream, offset, size, on_sent)

    def summary(self, last: httpx.Response | None) -> dict[str, Any]:
        """The JSON printed at the end: the service's description of the upload, with the
        stored object (key, size, sha256). Should a server answer without one, what the
        client knows is printed, in the same shape."""
        answer = json_answer(last) if last is not None else None
        if answer is not None and "object" in answer:
            return answer
        return {
            "id": self.url.rstrip("/").rsplit("/", 1)[-1],
            "url": self.url,
            "offset": self.file.size,
            "length": self.file.size,
            "complete": True,
            "filename": os.path.basename(self.path),
        }


def run(
    args: Any,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """`upload --resumable`; returns the exit status."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        if not args.url:
            raise UsageError("no URL: give --url or set UPLOAD_URL")
        endpoint = files_url(args.url)
        if len(args.files) != 1 or args.files[0] == "-":
            raise UsageError("--resumable sends one file, not stdin (-)")
        if args.field:
            raise UsageError("--field is not sent with --resumable")
        if args.chunk_size < 1:
            raise UsageError("--chunk-size must be at least 1 byte")
    except UsageError as exc:
        print(f"upload: {exc}", file=stderr)
        return 2
    status = None if args.quiet else StatusLine(stderr)

    def log(text: str) -> None:
        if status is not None:
            status.close()
        if not args.quiet:
            print(f"upload: {text}", file=stderr, flush=True)

    client = httpx.Client(timeout=httpx.Timeout(args.timeout, connect=10.0), transport=transport)
    started = time.monotonic()
    try:
        with client:
            upload = ResumableUpload(
                TusClient(client, args.token),
                endpoint,
                args.files[0],
                state=ResumeState(Path(args.state_dir)),
                chunk_size=args.chunk_size,
                backoff=Backoff(attempts=args.retries + 1),
                sleep=sleep,
                log=log,
            )
            progress = Progress(upload.file.size, status)
            last = upload.run(progress)
    except KeyboardInterrupt:
        if status is not None:
            status.close()
        print("upload: interrupted; the same command continues the upload", file=stderr)
        return 130
    except OSError as exc:
        if status is not None:
            status.close()
        print(f"upload: cannot read {exc.filename}: {exc.strerror}", file=stderr)
        return 1
    except (UploadFailed, httpx.HTTPError) as exc:
        if status is not None:
            status.close()
        print(f"upload failed: {exc}", file=stderr)
        return 1
    seconds = time.monotonic() - started
    if status is not None:
        rate = format_rate(upload.sent / seconds if seconds > 0 else 0.0)
        status.close(f"sent {format_bytes(upload.sent)} in {format_clock(seconds)} ({rate})")
    stdout.write(json.dumps(upload.summary(last), ensure_ascii=False) + "\n")
    stdout.flush()
    return 0
