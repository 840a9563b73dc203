"""The hooks as an upload endpoint uses them, and their life in the process.

`open_hooks` (in the app's lifespan) opens the process's one httpx client and starts the
deliverer; it yields None when UPLOAD_HOOK_URL is unset. An endpoint asks `pre_create_for` its
request before each file, and calls `finished` or `aborted` before it answers. The form
endpoint does so now; the resumable one is to call the same three.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx

from app.hooks.caller import HookCaller, PreCreateDecision
from app.hooks.events import NewFile, UploadContext, post_abort_event, post_finish_event
from app.hooks.outbox import Outbox
from app.settings import Settings
from app.storage import S3Client

logger = logging.getLogger("app.hooks")


class UploadHooks:
    """pre-create asked at once; post-finish and post-abort recorded for the deliverer."""

    def __init__(self, caller: HookCaller, outbox: Outbox) -> None:
        self.caller = caller
        self.outbox = outbox

    def pre_create_for(
        self, context: UploadContext
    ) -> Callable[[NewFile], Awaitable[PreCreateDecision]]:
        """The pre-create question for one request's files."""

        async def pre_create(file: NewFile) -> PreCreateDecision:
            return await self.caller.pre_create(context, file)

        return pre_create

    async def finished(self, context: UploadContext, answer: dict[str, Any]) -> None:
        """Files are stored; `answer` is what the client is told. The record is shielded: a
        request cancelled meanwhile (shutdown) does not cut it short."""
        await asyncio.shield(self.outbox.add(post_finish_event(context, answer)))

    async def aborted(
        self, context: UploadContext, reason: str, files: list[dict[str, str]]
    ) -> None:
        """`files` were started and undone for `reason` (an error code); none: no event.
        Shielded as `finished` is."""
        if files:
            await asyncio.shield(self.outbox.add(post_abort_event(context, reason, files)))


@contextlib.asynccontextmanager
async def open_hooks(settings: Settings, storage: S3Client) -> AsyncIterator[UploadHooks | None]:
    """The process's hooks, their deliverer running, or None without UPLOAD_HOOK_URL."""
    if settings.hook_url is None:
        yield None
        return
    # Redirects are not followed: the signed call goes only where the operator said.
    async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as http:
        caller = HookCaller(http, settings)
        outbox = Outbox(storage, caller, settings)
        deliverer = asyncio.create_task(outbox.run(), name="hook deliverer")
        logger.info("hooks: calling %s", _without_credentials(settings.hook_url))
        try:
            yield UploadHooks(caller, outbox)
        finally:
            outbox.stop()
            deliverer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await deliverer


def _without_credentials(url: str) -> str:
    parsed = httpx.URL(url)
    return str(parsed.copy_with(userinfo=b"")) if parsed.userinfo else url
