"""Configuration from environment variables, each declared once.

Every setting is one field of `Settings` that says everything about it (app/envvars.py): the
variable, the default, how its text is read, the rule a value must follow, and a line of
documentation. Construction checks the rules, `from_env` reads the variables, and the table in
docs/configuration.md is rendered, all from those declarations (`python -m app.settings
--write-docs docs/configuration.md` rewrites it). Settings are read once at start-up; an invalid
value stops the process with a `SettingsError` that names the variable, so a typo never turns
into odd behaviour later.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from app.auth import BearerToken, parse_token_entries
from app.envvars import (
    Rule,
    SettingsError,
    alternatives,
    at_least,
    between,
    check_rules,
    choice,
    flag,
    markdown_table,
    names,
    number,
    optional,
    read_environ,
    required,
    seconds,
    size,
    text,
)
from app.storage.partsize import MAX_PART_SIZE, MAX_PARTS, MAX_SINGLE_PUT, MIN_PART_SIZE
from app.storage.providers import PROFILES, ProviderProfile
from app.units import KiB, MiB

#: Keys under it hold the hooks' pending and failed deliveries (app/hooks/outbox.py). No upload
#: key can start with it: server-made keys start with the prefix and a uuid, a chosen key's
#: segments never start with a dot, and S3_KEY_PREFIX may not overlap it.
HOOKS_PREFIX = ".upload-hooks/"
#: Resumable uploads' bookkeeping (app/resumable/state.py): never under S3_KEY_PREFIX.
RESUMABLE_PREFIX = ".upload-resumable/"

__all__ = [
    "HOOKS_PREFIX",
    "RESUMABLE_PREFIX",
    "Settings",
    "SettingsError",
    "settings_table",
    "with_settings_table",
]

ChecksumMode = Literal["when_required", "when_supported"]
AddressingStyle = Literal["auto", "path", "virtual"]
PayloadSigning = Literal["auto", "on", "off"]
ConditionalWrites = Literal["auto", "on", "off"]


def _valid_token_entries(entries: tuple[str, ...]) -> bool:
    try:
        parse_token_entries(entries)
    except ValueError:
        return False
    return True


def _endpoint_gives_path_style(read: Mapping[str, Any]) -> AddressingStyle:
    return "path" if read.get("s3_endpoint_url") else "auto"


#: scheme://host[:port], as a browser sends it in `Origin` (lowercased).
_ORIGIN = re.compile(r"https?://[a-z0-9.\-\[\]:]+")

_PROVIDERS = alternatives([f"`{name}`" for name in PROFILES])
_LINK_PROVIDERS = "([Providers and integrity](#providers-and-integrity))"


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the service needs to know; each field is declared with its environment variable."""

    s3_bucket: str = required("S3_BUCKET", doc="bucket that receives the objects")
    s3_endpoint_url: str | None = optional(
        "S3_ENDPOINT_URL",
        doc="S3 API endpoint, e.g. `http://minio:9000`, `https://s3.us-west-004.backblazeb2.com`",
        default_doc="unset = AWS",
    )
    s3_provider: str = text(
        "S3_PROVIDER",
        "",
        Rule(lambda name: not name or name in PROFILES, "must be one of " + ", ".join(PROFILES)),
        lower=True,
        default_doc="`aws` with no `S3_ENDPOINT_URL`, else `generic`; `local` for the "
        "embedded store of `python -m app serve`",
        doc=f"{_PROVIDERS}: picks the integrity check sent with each part, what is verified in "
        f"the store's answers, and part rules {_LINK_PROVIDERS}",
    )
    s3_max_parts: int = number(
        "S3_MAX_PARTS",
        0,
        between(0, MAX_PARTS, "must be 0 (provider's) to 10000"),
        default_doc="`0` = the provider's limit (10,000)",
        doc="parts per multipart upload, up to 10000; when `Content-Length` shows a file would "
        "need more, its parts grow to fit",
    )
    s3_region: str = text("S3_REGION", "us-east-1", doc="signing region")
    s3_key_prefix: str = text(
        "S3_KEY_PREFIX",
        "uploads/",
        verbatim=True,
        doc="every key starts with it, exactly as given: not trimmed, and set but empty is "
        "no prefix",
    )
    s3_checksum_mode: ChecksumMode = choice(  # noqa: RUF009 - a str, immutable
        "S3_CHECKSUM_MODE",
        "when_required",
        ChecksumMode,
        doc=f"when botocore adds its own default `x-amz-checksum-*` {_LINK_PROVIDERS}",
    )
    s3_payload_signing: PayloadSigning = choice(  # noqa: RUF009 - a str, immutable
        "S3_PAYLOAD_SIGNING",
        "auto",
        PayloadSigning,
        lower=True,
        doc="whether botocore SHA-256-signs each part's payload. `auto` is botocore's rule: "
        "signed over `http://`, not over `https://`, where the part's Content-MD5 or CRC32C "
        "protects it. `off`: unsigned over `http://` too, which saves a SHA-256 pass over every "
        "byte; for a loopback or private-network store (the embedded store of `python -m app "
        "serve` uses `off` unless this is set). `on`: always signed",
    )
    s3_addressing_style: AddressingStyle = choice(  # noqa: RUF009 - a str, immutable
        "S3_ADDRESSING_STYLE",
        "auto",
        AddressingStyle,
        default_from=_endpoint_gives_path_style,
        default_doc="`path` with an endpoint, else `auto`",
        doc="`path` (MinIO and most self-hosted stores), `virtual` or `auto` (botocore "
        "chooses: AWS)",
    )
    s3_max_attempts: int = number(
        "S3_MAX_ATTEMPTS",
        5,
        between(1, 20),
        doc="attempts per S3 call (retry mode `standard`: backoff, retries 500/503/SlowDown)",
    )
    s3_max_pool_connections: int = number(
        "S3_MAX_POOL_CONNECTIONS",
        64,
        between(1, 1024),
        doc="connections to storage per process, shared by all its uploads",
    )
    part_size: int = size(
        "UPLOAD_PART_SIZE",
        10 * MiB,
        between(
            MIN_PART_SIZE, MAX_PART_SIZE, "must be between 5 MiB and 5 GiB (S3's part size limits)"
        ),
        doc="multipart part size, 5 MiB to 5 GiB; grows by itself when `Content-Length` shows "
        "a file would need more than `S3_MAX_PARTS` parts",
    )
    multipart_threshold: int = size(
        "UPLOAD_MULTIPART_THRESHOLD",
        50 * MiB,
        between(0, MAX_SINGLE_PUT, "must be between 0 and 5 GiB (the largest single PutObject)"),
        doc="a body known (by `Content-Length`) to be smaller goes as one PutObject",
    )
    parts_in_flight: int = number(
        "UPLOAD_PARTS_IN_FLIGHT",
        1,
        between(1, 64),
        doc="part uploads running at once per file while the next part fills",
    )
    memory_budget: int = size(
        "UPLOAD_MEMORY_BUDGET",
        512 * MiB,
        at_least(MIN_PART_SIZE, "must be at least 5 MiB"),
        doc="part-buffer bytes all uploads of one process may hold (at least 5 MiB). When it is "
        "spent, uploads pause reading their bodies until parts are stored (TCP slows the "
        "clients; nothing fails); a file held for one PutObject whose buffer cannot grow becomes "
        "a multipart upload instead; a reservation bigger than the whole budget waits until it "
        "can run alone",
    )
    max_concurrent: int = number(
        "UPLOAD_MAX_CONCURRENT",
        0,
        at_least(0, "must be 0 (no limit) or more"),
        default_doc="`0` (no limit)",
        doc="uploads one process handles at once; beyond it, 503 `server_busy` with "
        "`Retry-After: 5`, answered before the body is read",
    )
    max_body_bytes: int = size(
        "UPLOAD_MAX_BYTES",
        0,
        at_least(0, "must be 0 (no limit) or more"),
        default_doc="`0` (no limit)",
        doc="largest request body",
    )
    max_fields: int = number("UPLOAD_MAX_FIELDS", 100, at_least(0), doc="text fields per request")
    max_field_bytes: int = size(
        "UPLOAD_MAX_FIELD_SIZE", 64 * KiB, at_least(0), doc="bytes per text field value"
    )
    max_files: int = number("UPLOAD_MAX_FILES", 100, at_least(1), doc="files per request")
    max_parts: int = number(
        "UPLOAD_MAX_PARTS",
        1000,
        at_least(1),
        doc="parts of any kind per request (files, text fields, and file parts with no file "
        "chosen)",
    )
    allowed_types: tuple[str, ...] = names(
        "UPLOAD_ALLOWED_TYPES",
        Rule(
            lambda types: all(t.startswith(".") or "/" in t for t in types),
            "must list content types (image/png, video/*) or extensions (.pdf)",
        ),
        lower=True,
        default_doc="unset (any)",
        doc="allowed files, comma-separated: content types (`image/png`, `video/*`) and "
        "extensions (`.pdf`); checked from the part's headers before any of its bytes is stored",
    )
    max_part_header_bytes: int = size(
        "UPLOAD_MAX_PART_HEADER_SIZE",
        16 * KiB,
        at_least(1 * KiB, "must be at least 1 KiB"),
        doc="bytes of one part's header section; a header that never ends is cut off here",
    )
    # uvicorn has no timeout for reading a request body: this is the only one.
    idle_timeout: float = seconds(
        "UPLOAD_IDLE_TIMEOUT",
        60.0,
        at_least(0.0, "must be 0 (off) or more seconds"),
        doc="seconds a body may send nothing before the upload is aborted (408); `0` turns it off",
    )
    linger_seconds: float = seconds(
        "UPLOAD_LINGER_SECONDS",
        5.0,
        between(0.0, 60.0, "must be 0 to 60 seconds"),
        doc="after an answer sent before the body was read (401, 413, 415...), seconds the "
        "rest of the body may still be read and dropped, so that a proxy or client in the "
        "middle of sending reads the answer instead of a reset ([Refusals](api.md#refusals))",
    )
    linger_bytes: int = size(
        "UPLOAD_LINGER_BYTES",
        64 * MiB,
        at_least(0),
        doc="the most body bytes read and dropped after such an answer; the connection is "
        "closed then, even if more is coming",
    )
    auth_tokens: tuple[str, ...] = names(
        "UPLOAD_AUTH_TOKENS",
        Rule(
            _valid_token_entries,
            "must be comma-separated `token` or `name:token` entries: tokens of at least 16 "
            "characters without spaces, names of 1 to 64 of A-Z a-z 0-9 _ . @ -",
        ),
        default_doc="unset (open, with a warning at start-up)",
        doc="comma-separated bearer tokens (16+ characters) allowed to upload, each bare or "
        "named `name:token` (e.g. `alice:…`); the name says who uploads in logs and hooks, a "
        "bare token's name is empty. Compared in constant time, never logged nor sent",
    )
    cors_origins: tuple[str, ...] = names(
        "UPLOAD_CORS_ORIGINS",
        Rule(
            lambda origins: all(o == "*" or _ORIGIN.fullmatch(o) for o in origins),
            "must be comma-separated origins (https://app.example.com, with a port if not the "
            "scheme's own; no path) or *",
        ),
        lower=True,
        default_doc="unset (same origin only)",
        doc="origins whose pages may call the service from the browser (CORS), comma-separated; "
        "`*` for any. The shipped nginx config reads the same variable "
        "([Integrating](integrating.md#cors))",
    )
    cors_credentials: bool = flag(
        "UPLOAD_CORS_CREDENTIALS",
        doc="`on`: pages of the allowed origins may send cookies and HTTP authentication "
        '(`credentials: "include"`); not with `*`. A bearer token in `Authorization` needs '
        "no credentials mode",
    )
    cors_max_age: int = number(
        "UPLOAD_CORS_MAX_AGE",
        600,
        between(0, 86400),
        doc="seconds a browser may cache a preflight's answer",
    )
    client_keys: bool = flag(
        "UPLOAD_CLIENT_KEYS",
        doc="`on`: a text field `<file field>.key` sent before a file chooses its key, "
        "`{S3_KEY_PREFIX}{key}` ([Client-chosen keys](#client-chosen-keys)). Off: `.key` fields "
        "are ordinary text fields",
    )
    no_overwrite: bool = flag(
        "UPLOAD_NO_OVERWRITE",
        doc="`on`: the write that makes each object visible carries `If-None-Match: *`, so an "
        "existing object is never replaced (409 `key_exists`; [No overwrite](#no-overwrite))",
    )
    # --- resumable uploads (app/resumable/, docs/resumable.md) ---
    resumable_expiry: float = seconds(
        "UPLOAD_RESUMABLE_EXPIRY",
        86400.0,
        between(60.0, 30 * 86400.0, "must be 60 seconds to 30 days"),
        doc="seconds after its last append that an unfinished resumable upload expires "
        "(`Upload-Expires`); `python -m app sweep` then removes what it left",
    )
    resumable_lease: float = seconds(
        "UPLOAD_RESUMABLE_LEASE",
        15.0,
        between(3.0, 600.0, "must be 3 to 600 seconds"),
        doc="seconds a request appending to a resumable upload holds it against other "
        "requests without renewing (it renews every third of it): how long an instance killed "
        "mid-request blocks the upload",
    )
    s3_conditional_writes: ConditionalWrites = choice(  # noqa: RUF009 - a str, immutable
        "S3_CONDITIONAL_WRITES",
        "auto",
        ConditionalWrites,
        lower=True,
        default_doc="`auto`: the provider's (`aws`, `minio`, `r2`: on)",
        doc="whether the store enforces `If-None-Match` and `If-Match` on PutObject; on, two "
        "instances cannot append to one resumable upload at once "
        "([Resumable uploads](resumable.md#several-instances))",
    )
    # --- hooks (app/hooks/, docs/integrating.md) ---
    hook_url: str | None = optional(
        "UPLOAD_HOOK_URL",
        doc="`http(s)://` URL the hooks are POSTed to (pre-create, post-finish, post-abort; "
        "[Hooks](integrating.md#hooks)); needs `UPLOAD_HOOK_SECRET`",
        default_doc="unset (no hooks)",
    )
    hook_secret: str | None = optional(
        "UPLOAD_HOOK_SECRET",
        doc="shared secret (16+ characters) that signs every hook call (HMAC-SHA256 in "
        "`Upload-Hook-Signature`); required with `UPLOAD_HOOK_URL`, never logged nor sent",
    )
    hook_timeout: float = seconds(
        "UPLOAD_HOOK_TIMEOUT",
        5.0,
        between(0.1, 60.0, "must be 0.1 to 60 seconds"),
        doc="seconds one hook call may take (connect and answer); a pre-create call holds its "
        "upload at most `(UPLOAD_HOOK_PRE_CREATE_RETRIES + 1) * UPLOAD_HOOK_TIMEOUT`",
    )
    hook_pre_create_retries: int = number(
        "UPLOAD_HOOK_PRE_CREATE_RETRIES",
        1,
        between(0, 5),
        doc="pre-create calls tried again, at once, after a timeout, a 5xx or no connection",
    )
    hook_fail_open: bool = flag(
        "UPLOAD_HOOK_FAIL_OPEN",
        doc="`on`: a pre-create hook that times out, answers 5xx or cannot be reached allows "
        "the upload. Off: such an upload is refused with 503 `hook_unavailable`",
    )
    hook_delivery_attempts: int = number(
        "UPLOAD_HOOK_DELIVERY_ATTEMPTS",
        12,
        between(1, 100),
        doc="attempts to deliver a post-finish or post-abort event before it is moved to "
        "`.upload-hooks/failed/` (logged and counted; [replay](integrating.md#replaying-failed-"
        "deliveries))",
    )
    hook_backoff: float = seconds(
        "UPLOAD_HOOK_BACKOFF",
        2.0,
        between(0.01, 3600.0, "must be 0.01 to 3600 seconds"),
        doc="wait before the second delivery attempt; it doubles after each failure",
    )
    hook_backoff_max: float = seconds(
        "UPLOAD_HOOK_BACKOFF_MAX",
        600.0,
        between(0.01, 86400.0, "must be 0.01 to 86400 seconds"),
        doc="longest wait between two delivery attempts",
    )
    hook_poll_interval: float = seconds(
        "UPLOAD_HOOK_POLL_INTERVAL",
        10.0,
        between(0.05, 3600.0, "must be 0.05 to 3600 seconds"),
        doc="how often each instance lists the pending deliveries in the bucket (events of "
        "other instances, and those left by a restart); its own new events go at once",
    )

    def __post_init__(self) -> None:
        check_rules(self)
        if self.cors_credentials and "*" in self.cors_origins:
            raise SettingsError(
                "UPLOAD_CORS_CREDENTIALS cannot be on with UPLOAD_CORS_ORIGINS=*: list the origins"
            )
        if self.hook_url is not None:
            if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", self.hook_url, re.IGNORECASE):
                raise SettingsError("UPLOAD_HOOK_URL must be an http:// or https:// URL")
            if self.hook_secret is None:
                raise SettingsError("UPLOAD_HOOK_SECRET is required with UPLOAD_HOOK_URL")
        if self.hook_secret is not None and len(self.hook_secret) < 16:
            raise SettingsError("UPLOAD_HOOK_SECRET must be at least 16 characters")
        for reserved, purpose in (
            (HOOKS_PREFIX, "hook deliveries"),
            (RESUMABLE_PREFIX, "resumable uploads' state"),
        ):
            if self.s3_key_prefix and (
                self.s3_key_prefix.startswith(reserved) or reserved.startswith(self.s3_key_prefix)
            ):
                raise SettingsError(
                    f"S3_KEY_PREFIX must not overlap {reserved!r}, reserved for {purpose}"
                )

    @functools.cached_property
    def bearer_tokens(self) -> tuple[BearerToken, ...]:
        """UPLOAD_AUTH_TOKENS read as names and tokens (checked valid at construction)."""
        return parse_token_entries(self.auth_tokens)

    @property
    def conditional_writes(self) -> bool:
        if self.s3_conditional_writes == "auto":
            return self.provider.conditional_writes
        return self.s3_conditional_writes == "on"

    @property
    def provider(self) -> ProviderProfile:
        """The S3_PROVIDER profile, with S3_MAX_PARTS applied."""
        name = self.s3_provider or ("generic" if self.s3_endpoint_url else "aws")
        profile = PROFILES[name]
        if self.s3_max_parts:
            profile = dataclasses.replace(profile, max_parts=self.s3_max_parts)
        return profile

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `environ` (default `os.environ`); a blank variable is unset."""
        return cls(**read_environ(cls, os.environ if environ is None else environ))


# --- the docs table -----------------------------------------------------------------------------

TABLE_BEGIN = "<!-- settings table: generated from app/settings.py, do not edit by hand -->"
TABLE_END = "<!-- end of settings table -->"


def settings_table() -> str:
    """The markdown table of every setting, in declaration order."""
    return markdown_table(Settings)


def with_settings_table(page: str) -> str:
    """`page` with the text between its two table markers replaced by `settings_table()`."""
    begin, end = page.find(TABLE_BEGIN), page.find(TABLE_END)
    if begin < 0 or end < begin:
        raise ValueError(f"the page needs the lines {TABLE_BEGIN!r} and then {TABLE_END!r}")
    return page[: begin + len(TABLE_BEGIN)] + "\n" + settings_table() + page[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m app.settings",
        description="Print the settings table, or rewrite it in a docs page between its markers.",
    )
    parser.add_argument(
        "--write-docs", metavar="PAGE", type=Path, help="e.g. docs/configuration.md"
    )
    args = parser.parse_args(argv)
    if args.write_docs is None:
        sys.stdout.write(settings_table())
        return 0
    page: Path = args.write_docs
    page.write_text(with_settings_table(page.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
