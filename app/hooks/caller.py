"""Signed hook calls over one shared httpx client, and the pre-create decision.

pre-create holds a file's first byte until the application answers, so its latency is bounded:
each call by UPLOAD_HOOK_TIMEOUT, and a timeout, a 5xx or no connection is tried again
UPLOAD_HOOK_PRE_CREATE_RETRIES times at once. Then it refuses with 503 (or, with
UPLOAD_HOOK_FAIL_OPEN, allows). A 4xx refuses with that status and the hook's `message`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from typing import Any

import httpx

from app import metrics
from app.errors import HookInvalidAnswer, HookRefused, HookUnavailable, InvalidKey
from app.forms.keys import ORIGINAL_NAME_KEY, client_object_key
from app.hooks.events import Event, NewFile, UploadContext, encode, pre_create_event
from app.hooks.signing import SIGNATURE_HEADER, signature_header
from app.settings import Settings

logger = logging.getLogger("app.hooks")

EVENT_HEADER = "Upload-Hook-Event"
ID_HEADER = "Upload-Hook-Id"

#: Metadata a hook may add: lowercase names, printable ASCII values (they travel as
#: `x-amz-meta-*` headers), and a total that leaves room in S3's 2 KB of user metadata for
#: the original filename (up to 1 KB, app/forms/keys.py).
METADATA_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
METADATA_VALUE = re.compile(r"[\x20-\x7e]{0,512}")
MAX_METADATA_BYTES = 900
#: The longest refusal message passed on to the client.
MAX_MESSAGE_CHARS = 500


@dataclasses.dataclass(frozen=True)
class PreCreateDecision:
    """An allowed file: the key the hook chose (full, under S3_KEY_PREFIX) or None, and the
    metadata it adds."""

    key: str | None = None
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)


class HookCaller:
    """Makes the hooks' HTTP calls: signed with UPLOAD_HOOK_SECRET, never carrying a token."""

    def __init__(self, http: httpx.AsyncClient, settings: Settings) -> None:
        assert settings.hook_url is not None and settings.hook_secret is not None
        self.http = http
        self.settings = settings
        self.url = settings.hook_url
        self._secret = settings.hook_secret

    async def send(self, event: Event) -> httpx.Response:
        """POST `event`, signed; httpx.HTTPError when no answer came within the timeout.

        httpx's own timeout bounds each phase (a receiver dripping bytes could outlast it);
        the whole call is bounded here too."""
        body = encode(event)
        headers = {
            "content-type": "application/json",
            EVENT_HEADER: event["type"],
            ID_HEADER: event["id"],
            SIGNATURE_HEADER: signature_header(self._secret, body),
        }
        timeout = self.settings.hook_timeout
        call = self.http.post(self.url, content=body, headers=headers, timeout=timeout)
        try:
            return await asyncio.wait_for(call, timeout)
        except TimeoutError:
            raise httpx.TimeoutException(f"no answer within {timeout:g} s") from None

    async def pre_create(self, context: UploadContext, file: NewFile) -> PreCreateDecision:
        """Ask whether `file` may be stored; raise HookRefused, HookUnavailable or
        HookInvalidAnswer if not. The time it takes is measured, retries included."""
        started = time.monotonic()
        outcome = "interrupted"  # the request was cancelled while waiting
        try:
            decision = await self._decide(context, file)
            outcome = "allowed" if decision is not None else "fail_open"
            return decision or PreCreateDecision()
        except HookRefused:
            outcome = "refused"
            raise
        except HookUnavailable:
            outcome = "unavailable"
            raise
        except HookInvalidAnswer:
            outcome = "invalid_answer"
            raise
        finally:
            metrics.HOOK_SECONDS.labels("pre-create", outcome).observe(time.monotonic() - started)

    async def _decide(self, context: UploadContext, file: NewFile) -> PreCreateDecision | None:
        """The hook's decision, or None when it failed and UPLOAD_HOOK_FAIL_OPEN allows."""
        event = pre_create_event(context, file)
        why = ""
        for _ in range(self.settings.hook_pre_create_retries + 1):
            try:
                response = await self.send(event)
            except httpx.HTTPError as exc:
                why = _describe(exc)
                continue
            if response.is_success:
                return self._allowed(response)
            if 400 <= response.status_code < 500:
                raise HookRefused(response.status_code, _refusal_message(response))
            why = f"it answered {response.status_code}"
        logger.warning(
            "pre-create hook failed: %s; %s",
            why,
            "allowed (UPLOAD_HOOK_FAIL_OPEN)" if self.settings.hook_fail_open else "refused",
            extra={"fields": {"request_id": context.request_id, "event_id": event["id"]}},
        )
        if self.settings.hook_fail_open:
            return None
        raise HookUnavailable(f"the upload could not be authorized: the hook failed ({why})")

    def _allowed(self, response: httpx.Response) -> PreCreateDecision:
        """A 2xx: its JSON object may choose `key` and add `metadata`; an empty body is fine."""
        if not response.content.strip():
            return PreCreateDecision()
        try:
            answer: Any = response.json()
        except ValueError:
            raise HookInvalidAnswer("the pre-create hook's answer is not JSON") from None
        if not isinstance(answer, dict):
            raise HookInvalidAnswer("the pre-create hook's answer is not a JSON object")
        key = answer.get("key")
        if key is not None:
            if not isinstance(key, str):
                raise HookInvalidAnswer("the pre-create hook's key is not a string")
            try:
                key = client_object_key(self.settings.s3_key_prefix, key)
            except InvalidKey as exc:
                raise HookInvalidAnswer(f"the pre-create hook chose an unsafe key: {exc}") from None
        return PreCreateDecision(key, _metadata(answer.get("metadata")))


def _metadata(given: object) -> dict[str, str]:
    if given is None:
        return {}
    if not isinstance(given, dict):
        raise HookInvalidAnswer("the pre-create hook's metadata is not a JSON object")
    total = 0
    for name, value in given.items():
        if not METADATA_NAME.fullmatch(name) or name == ORIGINAL_NAME_KEY:
            raise HookInvalidAnswer(
                f"the pre-create hook's metadata name {name[:70]!r} is not 1 to 64 of a-z 0-9 - "
                f"(or is {ORIGINAL_NAME_KEY!r}, which the service sets)"
            )
        if not isinstance(value, str) or not METADATA_VALUE.fullmatch(value):
            raise HookInvalidAnswer(
                f"the pre-create hook's metadata {name!r} is not printable ASCII up to 512 chars"
            )
        total += len(name) + len(value)
    if total > MAX_METADATA_BYTES:
        raise HookInvalidAnswer(
            f"the pre-create hook's metadata is over {MAX_METADATA_BYTES} bytes in all"
        )
    return dict(given)


def _refusal_message(response: httpx.Response) -> str:
    """The receiver's JSON `message`, printable and bounded, else a plain default."""
    try:
        answer: Any = response.json()
    except ValueError:
        answer = None
    message = answer.get("message") if isinstance(answer, dict) else None
    if isinstance(message, str):
        cleaned = "".join(ch for ch in message if ch.isprintable())[:MAX_MESSAGE_CHARS].strip()
        if cleaned:
            return cleaned
    return f"the application refused this upload ({response.status_code})"


def _describe(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "no answer in time"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
