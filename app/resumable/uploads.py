"""Resumable uploads' operations: create, read the offset, append, complete, terminate.

Every operation that changes an upload holds its lease first: the state's `lease` is set by
a conditional write of the state (app/resumable/state.py), so of two requests on any two
instances one holds it and the other is refused (423, or 409 in the IETF drafts). The lease
expires (UPLOAD_RESUMABLE_LEASE_SECONDS) unless renewed, which a long append does every third
of it, so an instance killed mid-request blocks the upload only that long. Within one
process a second request is refused before any store round trip.

The offset any answer gives is bytes durably in the bucket: the state is written before the
answer, and only bytes in stored parts or a stored tail count.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import mimetypes
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from app import metrics
from app.errors import (
    BodyTooLarge,
    StorageFailed,
    UploadCompleted,
    UploadError,
    UploadExpired,
    UploadLocked,
    UploadNotFound,
)
from app.forms.keys import ORIGINAL_NAME_KEY, encoded_original_name, object_key
from app.forms.upload import check_file_type, clean_content_type
from app.hooks.events import NewFile, UploadContext
from app.hooks.uploads import UploadHooks
from app.resumable import sha256
from app.resumable.append import Append, Appended, object_record
from app.resumable.protocol import parse_metadata
from app.resumable.state import (
    Lease,
    ResumableState,
    StateConflict,
    StateStore,
)
from app.settings import Settings
from app.storage import S3Client
from app.storage.failures import describe, error_code
from app.storage.integrity import UploadIntegrity
from app.storage.multipart import MultipartUpload
from app.storage.partsize import ObjectTooLarge, plan_part_size

logger = logging.getLogger("app.resumable")

#: Seconds a request waits for another request of this process that holds its upload (one
#: whose connection just broke takes a moment to keep what arrived and give the upload back).
HELD_HERE_WAIT = 3.0

#: Upload ids are 128 random bits in hex: unguessable, and the URL is the capability.
ID_BYTES = 16


def valid_id(text: str) -> bool:
    return len(text) == 2 * ID_BYTES and all(c in "0123456789abcdef" for c in text)


@dataclasses.dataclass(frozen=True)
class NewUpload:
    """What a creation request asks for."""

    length: int | None
    metadata_header: str
    metadata: dict[str, str]
    owner: str | None
    protocol: str
    context: UploadContext


#: Upload-Metadata keys that name the file and its type; the others are the upload's fields
#: (what the pre-create and post-finish hooks carry as a form's text fields).
NAME_KEYS = ("filename", "name")
TYPE_KEYS = ("filetype", "type", "contentType")


class ResumableUploads:
    """The process's resumable uploads: one per app, over the shared S3Client."""

    def __init__(
        self, storage: S3Client, settings: Settings, hooks: UploadHooks | None = None
    ) -> None:
        self.storage = storage
        self.settings = settings
        self.hooks = hooks
        self.states = StateStore(storage, conditional_writes=settings.conditional_writes)
        # Uploads a request of this process holds: set when it gives the upload back.
        self._held_here: dict[str, asyncio.Event] = {}

    # --- create ----------------------------------------------------------------------------

    async def create(self, new: NewUpload) -> tuple[ResumableState, str]:
        """CreateMultipartUpload and the first state; returns the state and its ETag."""
        settings, storage = self.settings, self.storage
        provider = storage.provider
        if (
            settings.max_body_bytes
            and new.length is not None
            and new.length > settings.max_body_bytes
        ):
            raise BodyTooLarge(
                f"Upload-Length {new.length} is larger than the limit of "
                f"{settings.max_body_bytes} bytes"
            )
        try:
            part_size = plan_part_size(settings.part_size, new.length, provider.max_parts)
        except ObjectTooLarge as exc:
            raise BodyTooLarge(str(exc)) from None
        filename = next((new.metadata[k] for k in NAME_KEYS if new.metadata.get(k)), "")
        declared_type = next((new.metadata[k] for k in TYPE_KEYS if new.metadata.get(k)), None)
        content_type = clean_content_type(
            declared_type or (mimetypes.guess_type(filename)[0] if filename else None)
        )
        if settings.allowed_types:
            check_file_type(settings.allowed_types, filename, content_type)
        upload_id = secrets.token_hex(ID_BYTES)
        key = object_key(settings.s3_key_prefix, filename, upload_id)
        object_metadata = {ORIGINAL_NAME_KEY: encoded_original_name(filename)} if filename else {}
        if self.hooks is not None:
            # Before anything is stored; a refusal raises. The hook's key wins.
            fields: dict[str, str | list[str]] = {
                k: v for k, v in new.metadata.items() if k not in (*NAME_KEYS, *TYPE_KEYS)
            }
            ask = self.hooks.pre_create_for(new.context)
            decision = await ask(NewFile("", filename, content_type, fields))
            key = decision.key or key
            object_metadata = {**decision.metadata, **object_metadata}
        multipart = await MultipartUpload.create(
            storage,
            key,
            UploadIntegrity(provider, key),
            content_type=content_type,
            metadata={"Metadata": object_metadata} if object_metadata else {},
        )
        now = time.time()
        state = ResumableState(
            id=upload_id,
            key=key,
            upload_id=multipart.upload_id,
            length=new.length,
            part_size=part_size,
            part_cap=storage.largest_part(),
            growing=new.length is None and not provider.equal_parts,
            metadata=new.metadata_header,
            filename=filename,
            content_type=content_type,
            owner=new.owner,
            protocol=new.protocol,
            created=now,
            expires=now + settings.resumable_expiry,
            sha256_state=sha256.ResumableSha256().state() if sha256.available() else None,
        )
        try:
            etag = await self.states.create(state)
        except (StorageFailed, StateConflict):
            with contextlib.suppress(StorageFailed):
                await multipart.abort()
            raise
        metrics.RESUMABLE.labels("created").inc()
        logger.info("resumable upload %s created for %s", upload_id, key)
        return state, etag

    # --- read ------------------------------------------------------------------------------

    async def status(
        self, upload_id: str, owner: str | None, context: UploadContext | None = None
    ) -> ResumableState:
        """The upload's state for HEAD: completed first if all its bytes are in.

        A request of this process still appending (typically the one whose connection just
        broke, being wound up) is waited for, briefly: its bytes then count in the offset
        this answer gives, and the client's next PATCH is not refused."""
        await self._settled_here(upload_id)
        state, _ = await self._load(upload_id, owner)
        if state.completed is None and state.length is not None and state.offset == state.length:
            # Every byte is stored but the completion failed or was cut off: finish it now,
            # so that an answer with offset == length always means the object exists.
            async with self.holding(upload_id, owner) as held:
                if held.state.completed is None:
                    await self.finish_upload(held, context)
                return held.state
        return state

    async def _load(self, upload_id: str, owner: str | None) -> tuple[ResumableState, str]:
        loaded = await self.states.load(upload_id) if valid_id(upload_id) else None
        if loaded is None or loaded[0].owner != owner:
            # Another token's upload is as good as unknown: its existence is not told.
            raise UploadNotFound("no such upload (it may have been terminated or expired)")
        state, etag = loaded
        if state.expired():
            metrics.RESUMABLE.labels("expired").inc()
            raise UploadExpired("the upload expired; start a new one")
        return state, etag

    # --- the lease -------------------------------------------------------------------------

    async def _settled_here(self, upload_id: str) -> bool:
        """Wait up to HELD_HERE_WAIT for a request of this process holding the upload to give
        it back; whether none holds it now."""
        released = self._held_here.get(upload_id)
        if released is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(released.wait(), HELD_HERE_WAIT)
        return upload_id not in self._held_here

    @contextlib.asynccontextmanager
    async def holding(self, upload_id: str, owner: str | None) -> AsyncIterator[Held]:
        """Hold the upload's lease for the block (see the module docstring)."""
        if not await self._settled_here(upload_id):
            # Read all the same: an unknown upload is 404, and the refusal names the offset.
            state, _ = await self._load(upload_id, owner)
            metrics.RESUMABLE.labels("conflict").inc()
            locked = UploadLocked("another request is appending to this upload; retry shortly")
            locked.upload_offset = state.offset
            raise locked
        released = self._held_here[upload_id] = asyncio.Event()
        try:
            state, etag = await self._load(upload_id, owner)
            now = time.time()
            if state.lease is not None and state.lease.held(now):
                metrics.RESUMABLE.labels("conflict").inc()
                locked = UploadLocked(
                    "another request is appending to this upload; retry in "
                    f"{max(state.lease.until - now, 0):.0f} s at most"
                )
                locked.upload_offset = state.offset
                raise locked
            state.lease = Lease(secrets.token_hex(8), now + self.settings.resumable_lease)
            try:
                etag = await self.states.save(state, etag)
            except StateConflict:
                metrics.RESUMABLE.labels("conflict").inc()
                locked = UploadLocked("another request took this upload first; retry shortly")
                locked.upload_offset = state.offset
                raise locked from None
            held = Held(self, state, etag)
            try:
                yield held
            finally:
                # The lease is given back even when the request was cancelled.
                with contextlib.suppress(Exception):
                    await asyncio.shield(held.release())
        finally:
            del self._held_here[upload_id]
            released.set()

    # --- append ----------------------------------------------------------------------------

    async def append(
        self,
        held: Held,
        append: Append,
        chunks: AsyncIterator[bytes],
        *,
        complete: bool,
        checkpoints: bool,
        context: UploadContext | None = None,
    ) -> ResumableState:
        """Take the request's bytes into the upload, then write the state (and complete it
        when its last byte is in). A request cut off keeps what it can, unless
        `checkpoints` is off (a checksummed or chunked request: discarded whole)."""
        state = held.state
        renewal = held.renew_while(append if checkpoints else None)
        try:
            try:
                async for chunk in chunks:
                    await append.write(chunk)
                done = complete or (state.length is not None and append.new_offset == state.length)
                appended = await append.finish(complete=done)
            except BaseException:
                if checkpoints:
                    # Cut off, or storing failed: keep what reached the bucket.
                    with contextlib.suppress(Exception):
                        await asyncio.shield(self._keep_what_arrived(held, append))
                raise
        except BaseException:
            await asyncio.shield(append.stop())
            raise
        finally:
            await renewal.stop()
        await held.commit(appended, extend=append.received > 0)
        if done:
            if state.length is None:
                state.length = state.offset
            await self.complete(held, context)
        return state

    async def _keep_what_arrived(self, held: Held, append: Append) -> None:
        """A request that ended early keeps its bytes: its parts, the rest as the new tail.
        If storing those failed, what did reach the bucket: its parts in an unbroken run."""
        if append.finishing:
            appended = append.durable()  # the finish failed: do not try it again
        else:
            try:
                appended = await append.finish(complete=False)
            except Exception:
                appended = append.durable()
        await held.commit(appended, extend=True)

    # --- complete and terminate ------------------------------------------------------------

    async def finish_upload(self, held: Held, context: UploadContext | None) -> None:
        """Complete an upload whose bytes are all stored, its tail (if a cut-off request left
        the last bytes there) sent as the last part first."""
        state = held.state
        if state.tail is not None:
            append = Append(self.storage, state, checksum=None)
            try:
                appended = await append.finish(complete=True)
            except BaseException:
                await asyncio.shield(append.stop())
                raise
            await held.commit(appended, extend=False)
        await self.complete(held, context)

    async def complete(self, held: Held, context: UploadContext | None = None) -> None:
        """CompleteMultipartUpload from the parts in the state; the state records the object;
        the post-finish hook is told (`context`: the completing request's)."""
        state, storage = held.state, self.storage
        integrity = UploadIntegrity(storage.provider, state.key)
        for part in state.parts:
            integrity.remember(part.number, part.checks)
        parts = [
            {"ETag": p.etag, "PartNumber": p.number, **integrity.completion_fields(p.number)}
            for p in state.parts
        ]
        final_write = {"IfNoneMatch": "*"} if self.settings.no_overwrite else {}
        try:
            response = await storage.call(
                "CompleteMultipartUpload",
                storage.client.complete_multipart_upload,
                Key=state.key,
                UploadId=state.upload_id,
                MultipartUpload={"Parts": parts},
                **final_write,
            )
        except StorageFailed as exc:
            if error_code(exc.__cause__ or exc) != "NoSuchUpload":
                raise
            # An earlier completion went through but its answer was lost.
            response = await self._completed_object(state)
        else:
            integrity.check_complete(response, len(parts))
        digest = None
        if state.sha256_state is not None and sha256.available():
            digest = sha256.ResumableSha256(state.sha256_state).hexdigest()
        state.completed = object_record(state, digest, response)
        old_tail = state.tail
        state.tail = None
        await held.save()
        if old_tail is not None:
            await self._delete_quietly(old_tail.key)
        if self.hooks is not None and context is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.hooks.finished(context, finished_answer(state))
        metrics.RESUMABLE.labels("completed").inc()
        metrics.BYTES_STORED.inc(state.offset)
        metrics.OBJECTS_STORED.labels("multipart").inc()
        logger.info(
            "resumable upload %s completed: %s, %d bytes", state.id, state.key, state.offset
        )

    async def _completed_object(self, state: ResumableState) -> dict[str, Any]:
        storage = self.storage
        try:
            head = await storage.client.head_object(Bucket=storage.bucket, Key=state.key)  # type: ignore[attr-defined]
        except Exception as exc:
            raise StorageFailed(
                f"the multipart upload of {state.key} is gone and no object is there: "
                f"{describe(exc)}"
            ) from exc
        if int(head.get("ContentLength", -1)) != state.offset:
            raise StorageFailed(f"the object at {state.key} is not this upload's")
        return dict(head)

    async def terminate(
        self, upload_id: str, owner: str | None, context: UploadContext | None = None
    ) -> None:
        """DELETE: abort the multipart upload and remove the bookkeeping."""
        async with self.holding(upload_id, owner) as held:
            state = held.state
            if state.completed is not None:
                raise UploadCompleted("the upload is complete; its object stays")
            with contextlib.suppress(StorageFailed):
                await self.storage.call(
                    "AbortMultipartUpload",
                    self.storage.client.abort_multipart_upload,
                    Key=state.key,
                    UploadId=state.upload_id,
                )
            await self.states.remove_all(upload_id)
            held.released = True
            if self.hooks is not None and context is not None:
                started = [{"field": "", "filename": state.filename, "key": state.key}]
                with contextlib.suppress(asyncio.CancelledError):
                    await self.hooks.aborted(context, "terminated", started)
        metrics.RESUMABLE.labels("terminated").inc()
        logger.info("resumable upload %s terminated", upload_id)

    async def _delete_quietly(self, key: str) -> None:
        try:
            await self.storage.delete(key)
        except StorageFailed as exc:
            logger.warning("could not delete %s (the sweep will): %s", key, exc.message)


def finished_answer(state: ResumableState) -> dict[str, Any]:
    """What the post-finish hook carries for a resumable upload: its file as a form upload's
    answer lists files, the Upload-Metadata entries as its fields, and the upload's id."""
    record = state.completed or {}
    fields = {k: v for k, v in _metadata_of(state).items() if k not in (*NAME_KEYS, *TYPE_KEYS)}
    return {
        "resumable": {"id": state.id, "protocol": state.protocol},
        "files": [{"field": "", **{k: v for k, v in record.items() if k != "etag"}}],
        "fields": fields,
    }


def _metadata_of(state: ResumableState) -> dict[str, str]:
    try:
        return parse_metadata(state.metadata)
    except UploadError:
        return {}


class Held:
    """An upload whose lease this request holds: its state, and the writes of it."""

    def __init__(self, uploads: ResumableUploads, state: ResumableState, etag: str) -> None:
        self._uploads = uploads
        self.state = state
        self._etag = etag
        self._writing = asyncio.Lock()  # a renewal and the final write never overlap
        self.released = False  # the lease was given back (or the state removed)

    async def save(self) -> None:
        """Write the state, still leased."""
        async with self._writing:
            await self._save(self.state)

    async def _save(self, state: ResumableState) -> None:
        try:
            self._etag = await self._uploads.states.save(state, self._etag)
        except StateConflict:
            raise UploadLocked(
                "the upload's lease ran out and another request took it; retry"
            ) from None

    async def commit(self, appended: Appended, *, extend: bool) -> None:
        """The request's bytes into the state; the old tail removed once it is replaced."""
        state = self.state
        old_tail, old_offset = state.tail, state.offset
        appended.apply(state)
        if extend:
            state.expires = time.time() + self._uploads.settings.resumable_expiry
        await self.save()
        metrics.RESUMABLE_BYTES.inc(max(state.offset - old_offset, 0))  # kept, cut off or not
        if old_tail is not None and state.tail != old_tail:
            await self._uploads._delete_quietly(old_tail.key)

    async def release(self) -> None:
        if self.released:
            return
        self.released = True
        async with self._writing:
            self.state.lease = None
            await self._save(self.state)

    def renew_while(self, append: Append | None) -> Renewal:
        """Renew the lease until stopped; with `append`, each renewal also records the parts
        it has stored so far (a checkpoint), so an instance killed mid-request loses little."""
        return Renewal(self, append)


class Renewal:
    def __init__(self, held: Held, append: Append | None) -> None:
        self._held = held
        self._append = append
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        held = self._held
        every = held._uploads.settings.resumable_lease / 3
        while True:
            await asyncio.sleep(every)
            async with held._writing:
                state = held.state
                lease = state.lease
                if lease is None:
                    return
                lease.until = time.time() + held._uploads.settings.resumable_lease
                snapshot = state
                if self._append is not None:
                    durable = self._append.durable()
                    if durable.parts:
                        snapshot = dataclasses.replace(state, parts=[*state.parts])
                        durable.apply(snapshot)
                try:
                    await held._save(snapshot)
                except (UploadLocked, StorageFailed) as exc:
                    logger.warning("lease renewal of %s failed: %s", state.id, exc)

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
