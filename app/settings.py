"""Configuration from environment variables.

Every setting is read once at start-up; an invalid value stops the process with a
`SettingsError` that names the variable, so a typo never turns into odd behaviour later.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Literal

from app.storage.partsize import MAX_PART_SIZE, MAX_SINGLE_PUT, MIN_PART_SIZE
from app.storage.providers import PROFILES, ProviderProfile
from app.units import KiB, MiB, parse_size

ChecksumMode = Literal["when_required", "when_supported"]
AddressingStyle = Literal["auto", "path", "virtual"]
PayloadSigning = Literal["auto", "on", "off"]


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the variable."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the service needs to know; defaults are the documented ones."""

    #: Bucket that receives every object. Required.
    s3_bucket: str
    #: S3 API endpoint, e.g. `http://127.0.0.1:9000` for MinIO; None means AWS.
    s3_endpoint_url: str | None = None
    #: Which store this is (app/storage/providers.py): picks the per-part integrity check
    #: (Content-MD5 or CRC32), what is verified in the answers, and part rules. Empty: "aws" when no
    #: endpoint is set, else "generic".
    s3_provider: str = ""
    #: Parts per multipart upload; 0 takes the provider's limit (10,000 on all we know).
    s3_max_parts: int = 0
    s3_region: str = "us-east-1"
    #: Every key the service writes starts with this prefix.
    s3_key_prefix: str = "uploads/"
    #: When botocore adds flexible checksums (`x-amz-checksum-*`). botocore >= 1.36 defaults to
    #: "when_supported", which Backblaze B2 and older MinIO reject; "when_required" works on all.
    s3_checksum_mode: ChecksumMode = "when_required"
    #: Whether botocore SHA-256-hashes each part to sign it. "auto" is botocore's rule: signed
    #: over http://, not over https:// (the part's Content-MD5 or CRC32 protects it there).
    #: "off" drops it over http:// too (a loopback or private-network store: it costs a
    #: SHA-256 pass over every byte); "on" signs always.
    s3_payload_signing: PayloadSigning = "auto"
    #: "path" suits MinIO and most self-hosted stores; "auto" lets botocore choose (AWS).
    s3_addressing_style: AddressingStyle = "auto"
    #: Attempts per S3 call (botocore "standard" retry mode: backoff, retries 500/503/SlowDown).
    s3_max_attempts: int = 5
    #: Connections to storage shared by all uploads in the process.
    s3_max_pool_connections: int = 64
    #: Size of each multipart part; grows by itself past 10,000 parts.
    part_size: int = 10 * MiB
    #: Files whose request body is known to be smaller than this go as one PutObject.
    multipart_threshold: int = 50 * MiB
    #: Part uploads running at once per file while the next part fills.
    parts_in_flight: int = 1
    #: Bytes of file data the process may buffer across all uploads (app/storage/budget.py); past
    #: it, uploads stop reading their bodies until parts are stored. A buffer larger than the
    #: whole budget is still granted when nothing else is buffered (one at a time).
    memory_budget: int = 512 * MiB
    #: Uploads handled at once by the process; more get 503 with Retry-After. 0: no limit.
    max_concurrent: int = 0
    #: Largest request body accepted; 0 means no limit.
    max_body_bytes: int = 0
    #: Text fields per request, and bytes per text field value.
    max_fields: int = 100
    max_field_bytes: int = 64 * KiB
    #: Files per request.
    max_files: int = 100
    #: Parts of any kind per request (files, fields, and file parts with no file chosen).
    max_parts: int = 1000
    #: Allowed files: content types (`image/png`, `video/*`) and extensions (`.pdf`);
    #: empty allows everything.
    allowed_types: tuple[str, ...] = ()
    #: Bytes of one part's header section; a header that never ends is cut off here.
    max_part_header_bytes: int = 16 * KiB
    #: Seconds a request body may go without sending a byte before the upload is aborted
    #: (uvicorn has no body read timeout); 0 disables it.
    idle_timeout: float = 60.0
    #: Bearer tokens allowed to upload; empty means anyone may (a warning at start-up).
    auth_tokens: tuple[str, ...] = ()
    #: Callers may choose a file's key with a field `<file field>.key` sent before the file
    #: (stored under the prefix). Off: every key is `{prefix}{uuid}/{safe filename}`.
    client_keys: bool = False
    #: The final write of each object (PutObject or CompleteMultipartUpload) carries
    #: `If-None-Match: *`: an existing object is never replaced (409 key_exists).
    no_overwrite: bool = False

    def __post_init__(self) -> None:
        checks: list[tuple[str, bool, str]] = [
            ("S3_BUCKET", bool(self.s3_bucket), "is required"),
            (
                "S3_PROVIDER",
                not self.s3_provider or self.s3_provider in PROFILES,
                "must be one of " + ", ".join(PROFILES),
            ),
            ("S3_MAX_PARTS", 0 <= self.s3_max_parts <= 10_000, "must be 0 (provider's) to 10000"),
            (
                "UPLOAD_PART_SIZE",
                MIN_PART_SIZE <= self.part_size <= MAX_PART_SIZE,
                "must be between 5 MiB and 5 GiB (S3's part size limits)",
            ),
            (
                "UPLOAD_MULTIPART_THRESHOLD",
                0 <= self.multipart_threshold <= MAX_SINGLE_PUT,
                "must be between 0 and 5 GiB (the largest single PutObject)",
            ),
            (
                "UPLOAD_PARTS_IN_FLIGHT",
                1 <= self.parts_in_flight <= 64,
                "must be 1 to 64",
            ),
            (
                "UPLOAD_MEMORY_BUDGET",
                self.memory_budget >= MIN_PART_SIZE,
                "must be at least 5 MiB",
            ),
            ("UPLOAD_MAX_CONCURRENT", self.max_concurrent >= 0, "must be 0 (no limit) or more"),
            ("UPLOAD_MAX_BYTES", self.max_body_bytes >= 0, "must be 0 (no limit) or more"),
            ("UPLOAD_MAX_FIELDS", self.max_fields >= 0, "must be 0 or more"),
            ("UPLOAD_MAX_FIELD_SIZE", self.max_field_bytes >= 0, "must be 0 or more"),
            ("UPLOAD_MAX_FILES", self.max_files >= 1, "must be 1 or more"),
            ("UPLOAD_MAX_PARTS", self.max_parts >= 1, "must be 1 or more"),
            (
                "UPLOAD_ALLOWED_TYPES",
                all(t.startswith(".") or "/" in t for t in self.allowed_types),
                "must list content types (image/png, video/*) or extensions (.pdf)",
            ),
            ("UPLOAD_IDLE_TIMEOUT", self.idle_timeout >= 0, "must be 0 (off) or more seconds"),
            (
                "UPLOAD_AUTH_TOKENS",
                all(len(t) >= 16 and " " not in t for t in self.auth_tokens),
                "must be comma-separated tokens of at least 16 characters, without spaces",
            ),
            (
                "UPLOAD_MAX_PART_HEADER_SIZE",
                self.max_part_header_bytes >= 1 * KiB,
                "must be at least 1 KiB",
            ),
            ("S3_MAX_ATTEMPTS", 1 <= self.s3_max_attempts <= 20, "must be 1 to 20"),
            (
                "S3_MAX_POOL_CONNECTIONS",
                1 <= self.s3_max_pool_connections <= 1024,
                "must be 1 to 1024",
            ),
            (
                "S3_CHECKSUM_MODE",
                self.s3_checksum_mode in ("when_required", "when_supported"),
                "must be when_required or when_supported",
            ),
            (
                "S3_PAYLOAD_SIGNING",
                self.s3_payload_signing in ("auto", "on", "off"),
                "must be auto, on or off",
            ),
            (
                "S3_ADDRESSING_STYLE",
                self.s3_addressing_style in ("auto", "path", "virtual"),
                "must be auto, path or virtual",
            ),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise SettingsError(f"{name} {rule}")

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
        """Build settings from `environ` (default `os.environ`)."""
        env = os.environ if environ is None else environ

        def text(name: str, default: str) -> str:
            return env.get(name, "").strip() or default

        def size(name: str, default: int) -> int:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                return parse_size(raw)
            except ValueError as exc:
                raise SettingsError(f"{name}: {exc}") from None

        def integer(name: str, default: int) -> int:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                return int(raw)
            except ValueError:
                raise SettingsError(f"{name}: not a whole number: {raw!r}") from None

        def flag(name: str) -> bool:
            raw = env.get(name, "").strip().lower()
            if raw in ("", "0", "false", "no", "off"):
                return False
            if raw in ("1", "true", "yes", "on"):
                return True
            raise SettingsError(f"{name}: not on/off: {raw!r}")

        def seconds(name: str, default: float) -> float:
            raw = env.get(name, "").strip().lower().removesuffix("s")
            if not raw:
                return default
            try:
                return float(raw)
            except ValueError:
                raise SettingsError(f"{name}: not a number of seconds: {raw!r}") from None

        endpoint = env.get("S3_ENDPOINT_URL", "").strip() or None
        return cls(
            s3_bucket=env.get("S3_BUCKET", "").strip(),
            s3_endpoint_url=endpoint,
            s3_provider=env.get("S3_PROVIDER", "").strip().lower(),
            s3_max_parts=integer("S3_MAX_PARTS", 0),
            s3_region=text("S3_REGION", "us-east-1"),
            s3_key_prefix=env.get("S3_KEY_PREFIX", "uploads/"),
            s3_checksum_mode=text("S3_CHECKSUM_MODE", "when_required"),  # type: ignore[arg-type]
            s3_payload_signing=text("S3_PAYLOAD_SIGNING", "auto").lower(),  # type: ignore[arg-type]
            s3_addressing_style=text(  # type: ignore[arg-type]
                "S3_ADDRESSING_STYLE", "path" if endpoint else "auto"
            ),
            s3_max_attempts=integer("S3_MAX_ATTEMPTS", 5),
            s3_max_pool_connections=integer("S3_MAX_POOL_CONNECTIONS", 64),
            part_size=size("UPLOAD_PART_SIZE", 10 * MiB),
            multipart_threshold=size("UPLOAD_MULTIPART_THRESHOLD", 50 * MiB),
            parts_in_flight=integer("UPLOAD_PARTS_IN_FLIGHT", 1),
            memory_budget=size("UPLOAD_MEMORY_BUDGET", 512 * MiB),
            max_concurrent=integer("UPLOAD_MAX_CONCURRENT", 0),
            max_body_bytes=size("UPLOAD_MAX_BYTES", 0),
            max_fields=integer("UPLOAD_MAX_FIELDS", 100),
            max_field_bytes=size("UPLOAD_MAX_FIELD_SIZE", 64 * KiB),
            max_files=integer("UPLOAD_MAX_FILES", 100),
            max_parts=integer("UPLOAD_MAX_PARTS", 1000),
            allowed_types=tuple(
                t.strip().lower()
                for t in env.get("UPLOAD_ALLOWED_TYPES", "").split(",")
                if t.strip()
            ),
            max_part_header_bytes=size("UPLOAD_MAX_PART_HEADER_SIZE", 16 * KiB),
            idle_timeout=seconds("UPLOAD_IDLE_TIMEOUT", 60.0),
            auth_tokens=tuple(
                t.strip() for t in env.get("UPLOAD_AUTH_TOKENS", "").split(",") if t.strip()
            ),
            client_keys=flag("UPLOAD_CLIENT_KEYS"),
            no_overwrite=flag("UPLOAD_NO_OVERWRITE"),
        )
