"""One request's form: its files become objects, its text fields are kept (bounded).

`FormUpload.handle()` takes the parser's events in order. Files stream into storage as they
arrive, but none is made visible (completed) until `commit()`, which the endpoint calls only
after the whole body parsed cleanly; `abort()` undoes everything the request started.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from typing import Any

from app.errors import (
    DigestMismatch,
    FieldTooLarge,
    FileTypeNotAllowed,
    InvalidDigest,
    MalformedMultipart,
    NoFile,
    TooManyFields,
    TooManyFiles,
    TooManyParts,
)
from app.forms.keys import ORIGINAL_NAME_KEY, client_object_key, encoded_original_name, object_key
from app.forms.multipart import Event, PartEnd, PartStart
from app.settings import Settings
from app.storage.client import ObjectUpload, S3Client, StoredObject

logger = logging.getLogger("app.forms.upload")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_MEDIA_TYPE = re.compile(r"[a-z0-9!#$&^_.+-]{1,64}/[a-z0-9!#$&^_.+-]{1,128}")


def clean_content_type(value: str | None) -> str:
    """The part's media type if it is a well-formed `type/subtype`, else a safe default.

    It becomes a header of the request to storage: a control character in it (a fuzzer found
    NUL) would make the HTTP client refuse the call and the client get a 502.
    """
    candidate = (value or "").strip().lower()
    return candidate if _MEDIA_TYPE.fullmatch(candidate) else "application/octet-stream"


@dataclasses.dataclass
class FileEntry:
    field: str
    filename: str
    upload: ObjectUpload
    checked: bool = False


@dataclasses.dataclass
class _Field:
    name: str
    value: bytearray


class FormUpload:
    """Routes one request's parts: file bytes to storage, field bytes to bounded buffers."""

    def __init__(self, storage: S3Client, settings: Settings, *, body_size: int | None) -> None:
        self.storage = storage
        self.settings = settings
        self.body_size = body_size
        self.files: list[FileEntry] = []
        self.fields: dict[str, str | list[str]] = {}
        self._field_count = 0
        self._part_count = 0
        self._file: FileEntry | None = None
        self._field: _Field | None = None
        # UPLOAD_CLIENT_KEYS: keys from `<field>.key` fields, waiting for their file.
        self._chosen_keys: dict[str, list[str]] = {}

    async def handle(self, event: Event, offset: int) -> None:
        """Act on one parser event from the chunk that starts `offset` bytes into the body."""
        if isinstance(event, bytes):
            if self._file is not None:
                self._check_type(self._file)
                await self._file.upload.write(event)
            elif self._field is not None:
                self._field.value += event
                if len(self._field.value) > self.settings.max_field_bytes:
                    raise FieldTooLarge(
                        f"field {self._field.name!r} is longer than "
                        f"{self.settings.max_field_bytes} bytes"
                    )
        elif isinstance(event, PartStart):
            self._start(event, offset)
        elif isinstance(event, PartEnd):
            await self._end()

    def _start(self, part: PartStart, offset: int) -> None:
        self._part_count += 1
        if self._part_count > self.settings.max_parts:
            raise TooManyParts(f"more than {self.settings.max_parts} parts in one request")
        if part.filename is None:
            self._field_count += 1
            if self._field_count > self.settings.max_fields:
                raise TooManyFields(f"more than {self.settings.max_fields} text fields")
            self._field = _Field(part.field, bytearray())
        elif part.filename == "":
            pass  # a browser form with no file chosen sends this; its bytes are dropped
        else:
            if len(self.files) >= self.settings.max_files:
                raise TooManyFiles(f"more than {self.settings.max_files} files in one request")
            # The rest of the body bounds this file's size: the best hint we have.
            hint = None if self.body_size is None else max(self.body_size - offset, 0)
            upload = self.storage.open_upload(
                self._key_for(part),
                lambda: clean_content_type(part.content_type),
                size_hint=hint,
                on_budget_wait=self._spill_held,
                metadata={ORIGINAL_NAME_KEY: encoded_original_name(part.filename)},
                if_none_match=self.settings.no_overwrite,
            )
            self._file = FileEntry(part.field, part.filename, upload)
            self.files.append(self._file)

    def _key_for(self, part: PartStart) -> str:
        """The key the client chose for this file (a `<field>.key` field before it, taken in
        order when several files share the field name), else a server-made one."""
        chosen = self._chosen_keys.get(part.field)
        if chosen:
            return client_object_key(self.settings.s3_key_prefix, chosen.pop(0))
        assert part.filename is not None
        return object_key(self.settings.s3_key_prefix, part.filename)

    async def _end(self) -> None:
        if self._file is not None:
            self._check_type(self._file)
            await self._file.upload.close()
            self._file = None
            await self._limit_held_bytes()
        elif self._field is not None:
            try:
                value = self._field.value.decode("utf-8")
            except UnicodeDecodeError:
                raise MalformedMultipart(f"field {self._field.name!r} is not UTF-8") from None
            name = self._field.name
            if self.settings.client_keys and name.endswith(".key"):
                self._chosen_keys.setdefault(name.removesuffix(".key"), []).append(value)
            previous = self.fields.get(self._field.name)
            if previous is None:
                self.fields[self._field.name] = value
            elif isinstance(previous, list):
                previous.append(value)
            else:
                self.fields[self._field.name] = [previous, value]
            self._field = None

    async def _spill_held(self) -> None:
        """About to wait for memory: send the finished files held for a single PutObject.

        They would otherwise hold budget until the end of a body we stop reading, and
        requests doing the same could wait for each other forever (app/storage/budget.py).
        """
        for entry in self.files:
            if entry is not self._file and entry.upload.strategy == "single":
                await entry.upload.spill()

    async def _limit_held_bytes(self) -> None:
        """Finished small files wait in memory for the end of the body; cap their total."""
        held = [f.upload for f in self.files if f.upload.strategy == "single"]
        total = sum(u.held_bytes for u in held)
        for upload in sorted(held, key=lambda u: u.held_bytes, reverse=True):
            if total <= self.storage.multipart_threshold:
                break
            total -= upload.held_bytes
            await upload.spill()

    async def commit(self) -> dict[str, Any]:
        """The body is complete: make every file visible and return the response body."""
        if not self.files:
            raise NoFile("the form has no file (send one part with a filename)")
        self._check_client_digests()
        stored: list[tuple[FileEntry, StoredObject]] = []
        for entry in self.files:
            stored.append((entry, await entry.upload.commit()))
        return {
            "files": [
                {
                    "field": entry.field,
                    "filename": entry.filename,
                    "key": obj.key,
                    "size": obj.size,
                    "content_type": obj.content_type,
                    "sha256": obj.sha256,
                    "strategy": obj.strategy,
                    "parts": obj.parts,
                }
                for entry, obj in stored
            ],
            "fields": self.fields,
        }

    def _check_type(self, entry: FileEntry) -> None:
        """UPLOAD_ALLOWED_TYPES, checked at the part's first byte: its headers are all read
        by then (the parser reports a part's start before its Content-Type)."""
        allowed = self.settings.allowed_types
        if entry.checked or not allowed:
            return
        entry.checked = True
        content_type = entry.upload.content_type.lower()
        extension = "." + entry.filename.rsplit(".", 1)[-1].lower() if "." in entry.filename else ""
        for rule in allowed:
            if rule.startswith("."):
                if extension == rule:
                    return
            elif rule.endswith("/*"):
                if content_type.startswith(rule[:-1]):
                    return
            elif content_type == rule:
                return
        raise FileTypeNotAllowed(
            f"{entry.filename!r} ({content_type}) is not an allowed file type: "
            + ", ".join(allowed)
        )

    def _check_client_digests(self) -> None:
        """A field `<file field>.sha256` is the client's digest of that file: check it.

        Several files under one field name take that field's digests in order, one each.
        """
        seen: dict[str, int] = {}
        for entry in self.files:
            claimed = self.fields.get(f"{entry.field}.sha256")
            if claimed is None:
                continue
            digests = claimed if isinstance(claimed, list) else [claimed]
            files = sum(1 for f in self.files if f.field == entry.field)
            if len(digests) != files:
                raise InvalidDigest(
                    f"{len(digests)} {entry.field}.sha256 fields for {files} files named "
                    f"{entry.field!r}: send one digest per file"
                )
            index = seen.get(entry.field, 0)
            seen[entry.field] = index + 1
            value = digests[index].strip().lower()
            if not _SHA256_HEX.fullmatch(value):
                raise InvalidDigest(f"field {entry.field}.sha256 is not a hex SHA-256 digest")
            if value != entry.upload.sha256:
                raise DigestMismatch(
                    f"{entry.filename!r}: the bytes received have SHA-256 {entry.upload.sha256}, "
                    f"not {value} as {entry.field}.sha256 says; nothing was stored"
                )

    async def abort(self) -> None:
        """Undo every file of this request: abort uploads, delete objects already completed."""
        tasks = [entry.upload.begin_abort() for entry in self.files]
        if tasks:
            # Every cleanup is scheduled before we wait, so a cancelled request still runs all.
            await asyncio.shield(asyncio.gather(*tasks, return_exceptions=True))
