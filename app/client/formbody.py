"""multipart/form-data request bodies, produced as a stream for the upload CLI and the load test.

A body is made part by part from each file's chunks and never held whole. When every file's
size is known, the exact Content-Length is computed before the first byte is sent: the service
plans its part sizes from it (app/storage/partsize.py) and refuses an over-limit body before reading
it. A file of unknown size (stdin, a pipe) makes the body one for chunked transfer instead.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import AsyncIterator, Iterable, Iterator

#: Bytes read from a file (or generated) at a time: big enough that per-chunk overhead
#: vanishes, small enough that memory stays constant whatever the file size.
CHUNK_SIZE = 1024 * 1024


class FileSizeChanged(ValueError):
    """A file yielded more or fewer bytes than the size its Content-Length was computed from."""


def quote(value: str) -> str:
    """`value` as a quoted Content-Disposition parameter (`name="..."`, `filename="..."`),
    written as browsers write it (the HTML standard's multipart/form-data encoding).

    Only `"`, CR and LF are percent-encoded (`%22`, `%0D`, `%0A`): they would end the value
    or the header line. Everything else, `\\` and `%` included, goes as its UTF-8 bytes, so
    the service reads back the name as it was (docs/api.md, "Filenames").
    """
    encoded = value.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
    return f'"{encoded}"'


@dataclasses.dataclass(frozen=True)
class FormField:
    """A text field."""

    name: str
    value: str


@dataclasses.dataclass(frozen=True)
class FormFile:
    """A file part whose contents come from `data`, read once, as the body is sent."""

    field: str
    filename: str
    data: Iterable[bytes]
    #: Bytes `data` yields; None when unknown (the body then has no Content-Length).
    size: int | None
    content_type: str = "application/octet-stream"


class MultipartBody:
    """One request body: text fields first (as forms usually order them), then the files.

    Single use: the files' `data` iterables are consumed as the body is sent.
    """

    def __init__(
        self, fields: Iterable[FormField], files: Iterable[FormFile], boundary: str | None = None
    ) -> None:
        # Random, so it cannot occur in a file by accident (RFC 2046 allows up to 70 chars).
        self.boundary = boundary or f"----streaming-upload-{secrets.token_hex(16)}"
        #: In the order they are sent.
        self.parts: list[FormField | FormFile] = [*fields, *files]

    @classmethod
    def in_order(
        cls, parts: Iterable[FormField | FormFile], boundary: str | None = None
    ) -> MultipartBody:
        """A body whose fields and files come in the order of `parts`, interleaved as a form
        may send them."""
        body = cls((), (), boundary)
        body.parts = list(parts)
        return body

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    @property
    def content_length(self) -> int | None:
        """The exact body length, or None when a file's size is unknown."""
        total = len(self._closing())
        for part in self.parts:
            if isinstance(part, FormField):
                total += len(self._field_bytes(part))
            elif part.size is None:
                return None
            else:
                total += len(self._file_head(part)) + part.size + 2
        return total

    def headers(self) -> dict[str, str]:
        """Content-Type, and Content-Length when it is known."""
        headers = {"Content-Type": self.content_type}
        length = self.content_length
        if length is not None:
            headers["Content-Length"] = str(length)
        return headers

    def chunks(self) -> Iterator[bytes]:
        """The body, piece by piece: part headers whole, file data as the file yields it."""
        for part in self.parts:
            if isinstance(part, FormField):
                yield self._field_bytes(part)
            else:
                yield from self._file_chunks(part)
        yield self._closing()

    def _file_chunks(self, file: FormFile) -> Iterator[bytes]:
        yield self._file_head(file)
        sent = 0
        for chunk in file.data:
            sent += len(chunk)
            # Past the promised size, the Content-Length already sent would be a lie.
            if file.size is not None and sent > file.size:
                raise FileSizeChanged(f"{file.filename}: more than {file.size} bytes")
            if chunk:
                yield chunk
        if file.size is not None and sent != file.size:
            raise FileSizeChanged(f"{file.filename}: {sent} bytes, expected {file.size}")
        yield b"\r\n"

    async def achunks(self) -> AsyncIterator[bytes]:
        """`chunks()` for httpx.AsyncClient, which wants an async iterable."""
        for chunk in self.chunks():
            yield chunk

    def _field_bytes(self, field: FormField) -> bytes:
        head = f"--{self.boundary}\r\nContent-Disposition: form-data; name={quote(field.name)}"
        return f"{head}\r\n\r\n{field.value}\r\n".encode()

    def _file_head(self, file: FormFile) -> bytes:
        content_type = file.content_type.replace("\r", "").replace("\n", "")
        return (
            f"--{self.boundary}\r\n"
            f"Content-Disposition: form-data; name={quote(file.field)}; "
            f"filename={quote(file.filename)}\r\n"
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()

    def _closing(self) -> bytes:
        return f"--{self.boundary}--\r\n".encode()
