"""What each hook carries: a JSON event with an id, its type, when it was made, and who made
the upload. Built here, sent by app/hooks/caller.py, kept in the bucket by app/hooks/outbox.py.

Every event has `id` (unique: receivers de-duplicate at-least-once deliveries with it),
`type` (`pre-create`, `post-finish`, `post-abort`), `created_at` (UTC, ISO 8601) and `upload`:
who uploads (the token's name; "" for a bare token, null when no tokens are set), the client's
address, the request id, and the request's declared size (its Content-Length, or null).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from typing import Any

Event = dict[str, Any]
Fields = dict[str, str | list[str]]


@dataclasses.dataclass(frozen=True)
class UploadContext:
    """Who sends one upload request, as every hook of that request tells it."""

    uploader: str | None
    client: str
    request_id: str
    declared_size: int | None

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class NewFile:
    """A file part that begins: what pre-create is asked about."""

    field: str
    filename: str
    content_type: str
    #: The form's text fields before this file, as the answer lists them.
    fields: Fields


def new_event(kind: str, context: UploadContext, **content: Any) -> Event:
    return {
        "id": uuid.uuid4().hex,
        "type": kind,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        "upload": context.as_json(),
        **content,
    }


def pre_create_event(context: UploadContext, file: NewFile) -> Event:
    announced = {"field": file.field, "filename": file.filename, "content_type": file.content_type}
    return new_event("pre-create", context, file=announced, fields=file.fields)


def post_finish_event(context: UploadContext, answer: dict[str, Any]) -> Event:
    """`answer` is the JSON the client gets (`files`, `fields`): the event repeats it."""
    return new_event("post-finish", context, **answer)


def post_abort_event(context: UploadContext, reason: str, files: list[dict[str, str]]) -> Event:
    """`files` were started, then undone (multipart upload aborted, or object deleted);
    `reason` is the error code the client was answered with."""
    return new_event("post-abort", context, reason=reason, files=files)


def encode(event: Event) -> bytes:
    """The body of a hook call: compact UTF-8 JSON."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
