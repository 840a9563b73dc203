"""One request's form: its files become objects, its text fields are kept (bounded).

`FormUpload.handle()` takes the parser's events in order. Files stream into storage as they
arrive, but none is made visible (completed) until `commit()`, which the endpoint calls only
after the whole body parsed cleanly and which says what was stored (a `FormResult`);
`abort()` undoes everything the request started. With a `pre_create` question (the
pre-create hook), each file is asked about before any of its bytes is stored.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Awaitable, Callable

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
from app.hooks.caller import PreCreateDecision
from app.hooks.events import NewFile
from app.settings import Settings
from app.storage import ObjectUpload, S3Client, StoredObject

#: Asks the application whether a file may be stored (app/hooks/caller.py): raises to refuse.
PreCreate = Callable[[NewFile], Awaitable[PreCreateDecision]]

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_MEDIA_TYPE = re.compile(r"[a-z0-9!#$&^_.+-]{1,64}/[a-z0-9!#$&^_.+-]{1,128}")


def clean_content_type(value: str | None) -> str:
    """The part's media type if it is a well-formed `type/subtype`, else a safe default.

    It becomes a header of the request to storage: a control character in it (a fuzzer found
    NUL) would make the HTTP client refuse the call and the client get a 502.
    """
    candidate = (value or "").strip().lower()
    return candidate if _MEDIA_TYPE.fullmatch(candidate) else "application/octet-stream"


def check_file_type(allowed: tuple[str, ...], name: str, content_type: str) -> None:
    """UPLOAD_ALLOWED_TYPES: content types (`video/*` too) and extensions; FileTypeNotAllowed."""
    content_type = content_type.lower()
    extension = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
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
        f"{name!r} ({content_type}) is not an allowed file type: " + ", ".join(allowed)
    )


@dataclasses.dataclass(frozen=True)
class StoredFile:
    """One file of the form, made visible in storage."""

    field: str
    filename: str
    stored: StoredObject


@dataclasses.dataclass(frozen=True)
class FormResult:
    """A stored form: its files in the order they came, and its text fields (a name sent
    more than once has its values listed in order)."""

    files: list[StoredFile]
    fields: dict[str, str | list[str]]


@dataclasses.dataclass
class _File:
    """A file part whose bytes are going to storage."""

    field: str
    filename: str
    upload: ObjectUpload
    type_checked: bool = False


@dataclasses.dataclass
class _Field:
    """A text field part, its bytes kept until it ends."""

    name: str
    value: bytearray


class FormUpload:
    """Routes one request's parts: file bytes to storage, field bytes to bounded buffers."""

    def __init__(
        self,
        storage: S3Client,
        settings: Settings,
        *,
        body_size: int | None,
        pre_create: PreCreate | None = None,
    ) -> None:
        self.storage = storage
        self.settings = settings
        self.body_size = body_size
        self.pre_create = pre_create
        self._files: list[_File] = []
        self._fields: dict[str, str | list[str]] = {}
        self._part_count = 0
        self._field_count = 0
        self._part: _File | _Field | None = None  # the part being read; None: one to drop
        # UPLOAD_CLIENT_KEYS: keys from `<field>.key` fields, waiting for their file.
        self._chosen_keys: dict[str, list[str]] = {}

    @property
    def files_started(self) -> int:
        """Files whose upload began: what `abort()` undoes."""
        return len(self._files)

    def started_files(self) -> list[dict[str, str]]:
        """Field, filename and key of each file whose upload began (the post-abort hook's)."""
        return [
            {"field": f.field, "filename": f.filename, "key": f.upload.key} for f in self._files
        ]

    async def handle(self, event: Event, offset: int) -> None:
        """Act on one parser event from the chunk that starts `offset` bytes into the body."""
        if isinstance(event, PartStart):
            self._part = await self._start(event, offset)
        elif isinstance(event, PartEnd):
            await self._end()
        else:
            await self._write(event)

    async def _start(self, part: PartStart, offset: int) -> _File | _Field | None:
        """The part that begins: a text field, a file, or None (no file chosen: dropped)."""
        self._part_count += 1
        if self._part_count > self.settings.max_parts:
            raise TooManyParts(f"more than {self.settings.max_parts} parts in one request")
        if part.filename is None:
            self._field_count += 1
            if self._field_count > self.settings.max_fields:
                raise TooManyFields(f"more than {self.settings.max_fields} text fields")
            return _Field(part.field, bytearray())
        if part.filename == "":
            return None  # a browser form with no file chosen sends this; its bytes are dropped
        return await self._start_file(part, part.filename, offset)

    async def _start_file(self, part: PartStart, filename: str, offset: int) -> _File:
        if len(self._files) >= self.settings.max_files:
            raise TooManyFiles(f"more than {self.settings.max_files} files in one request")
        key = self._key_for(part.field, filename)
        content_type = clean_content_type(part.content_type)
        metadata = {ORIGINAL_NAME_KEY: encoded_original_name(filename)}
        if self.pre_create is not None:
            # Before any byte of the file is stored; a refusal raises. The hook's key wins.
            fields = {k: v if isinstance(v, str) else list(v) for k, v in self._fields.items()}
            decision = await self.pre_create(NewFile(part.field, filename, content_type, fields))
            key = decision.key or key
            metadata = {**decision.metadata, **metadata}
        # The rest of the body bounds this file's size: the best hint we have.
        hint = None if self.body_size is None else max(self.body_size - offset, 0)
        upload = self.storage.open_upload(
            key,
            content_type,
            size_hint=hint,
            on_budget_wait=self._spill_held,
            metadata=metadata,
            if_none_match=self.settings.no_overwrite,
        )
        file = _File(part.field, filename, upload)
        self._files.append(file)
        return file

    def _key_for(self, field: str, filename: str) -> str:
        """The key the client chose for this file (a `<field>.key` field before it, taken in
        order when several files share the field name), else a server-made one."""
        chosen = self._chosen_keys.get(field)
        if chosen:
            return client_object_key(self.settings.s3_key_prefix, chosen.pop(0))
        return object_key(self.settings.s3_key_prefix, filename)

    async def _write(self, data: bytes) -> None:
        """The open part's next bytes: a file's go to storage, a field's to its buffer."""
        if isinstance(self._part, _File):
            self._check_type(self._part)
            await self._part.upload.write(data)
        elif isinstance(self._part, _Field):
            self._part.value += data
            if len(self._part.value) > self.settings.max_field_bytes:
                raise FieldTooLarge(
                    f"field {self._part.name!r} is longer than "
                    f"{self.settings.max_field_bytes} bytes"
                )

    async def _end(self) -> None:
        if isinstance(self._part, _File):
            self._check_type(self._part)
            await self._part.upload.close()
            self._part = None  # closed: from now on it may be spilled like the others
            await self._limit_held_bytes()
        elif isinstance(self._part, _Field):
            field, self._part = self._part, None
            try:
                value = field.value.decode("utf-8")
            except UnicodeDecodeError:
                raise MalformedMultipart(f"field {field.name!r} is not UTF-8") from None
            self._keep_field(field.name, value)

    def _keep_field(self, name: str, value: str) -> None:
        if self.settings.client_keys and name.endswith(".key"):
            self._chosen_keys.setdefault(name.removesuffix(".key"), []).append(value)
        previous = self._fields.get(name)
        if previous is None:
            self._fields[name] = value
        elif isinstance(previous, list):
            previous.append(value)
        else:
            self._fields[name] = [previous, value]

    async def _spill_held(self) -> None:
        """About to wait for memory: send the finished files held for a single PutObject.

        They would otherwise hold budget until the end of a body we stop reading, and
        requests doing the same could wait for each other forever (app/storage/budget.py).
        """
        for file in self._files:
            if file is not self._part and file.upload.strategy == "single":
                await file.upload.spill()

    async def _limit_held_bytes(self) -> None:
        """Finished small files wait in memory for the end of the body; cap their total."""
        held = [f.upload for f in self._files if f.upload.strategy == "single"]
        total = sum(u.held_bytes for u in held)
        for upload in sorted(held, key=lambda u: u.held_bytes, reverse=True):
            if total <= self.storage.multipart_threshold:
                break
            total -= upload.held_bytes
            await upload.spill()

    async def commit(self) -> FormResult:
        """The body is complete: make every file visible, in order, and say what was stored."""
        if not self._files:
            raise NoFile("the form has no file (send one part with a filename)")
        self._check_client_digests()
        stored = [
            StoredFile(file.field, file.filename, await file.upload.commit())
            for file in self._files
        ]
        return FormResult(stored, self._fields)

    def _check_type(self, file: _File) -> None:
        """UPLOAD_ALLOWED_TYPES, checked at the part's first byte: its headers are all read
        by then (the parser reports a part's start before its Content-Type)."""
        allowed = self.settings.allowed_types
        if file.type_checked or not allowed:
            return
        file.type_checked = True
        check_file_type(allowed, file.filename, file.upload.content_type)

    def _check_client_digests(self) -> None:
        """A field `<file field>.sha256` is the client's digest of that file: check it.

        Several files under one field name take that field's digests in order, one each.
        """
        seen: dict[str, int] = {}
        for file in self._files:
            claimed = self._fields.get(f"{file.field}.sha256")
            if claimed is None:
                continue
            digests = claimed if isinstance(claimed, list) else [claimed]
            files = sum(1 for f in self._files if f.field == file.field)
            if len(digests) != files:
                raise InvalidDigest(
                    f"{len(digests)} {file.field}.sha256 fields for {files} files named "
                    f"{file.field!r}: send one digest per file"
                )
            index = seen.get(file.field, 0)
            seen[file.field] = index + 1
            value = digests[index].strip().lower()
            if not _SHA256_HEX.fullmatch(value):
                raise InvalidDigest(f"field {file.field}.sha256 is not a hex SHA-256 digest")
            if value != file.upload.sha256:
                raise DigestMismatch(
                    f"{file.filename!r}: the bytes received have SHA-256 {file.upload.sha256}, "
                    f"not {value} as {file.field}.sha256 says; nothing was stored"
                )

    async def abort(self) -> None:
        """Undo every file of this request: abort uploads, delete objects already completed."""
        tasks = [file.upload.begin_abort() for file in self._files]
        if tasks:
            # Every cleanup is scheduled before we wait, so a cancelled request still runs all.
            await asyncio.shield(asyncio.gather(*tasks, return_exceptions=True))
