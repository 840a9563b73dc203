"""Settings.from_env and parse_size: documented defaults, accepted sizes, and clear errors."""

from __future__ import annotations

import dataclasses
import re

import pytest

from app.settings import Settings, SettingsError
from app.storage.partsize import MAX_PART_SIZE, MAX_SINGLE_PUT, MIN_PART_SIZE
from app.units import GiB, KiB, MiB, TiB, parse_size

BUCKET = {"S3_BUCKET": "my-bucket"}


def from_env(**extra: str) -> Settings:
    return Settings.from_env({**BUCKET, **extra})


# --- units --------------------------------------------------------------------------------------


def test_unit_constants() -> None:
    assert (KiB, MiB, GiB, TiB) == (1024, 1024**2, 1024**3, 1024**4)
    assert MIN_PART_SIZE == 5_242_880  # 5 MiB
    assert MAX_PART_SIZE == 5_368_709_120  # 5 GiB
    assert MAX_SINGLE_PUT == 5_368_709_120  # 5 GiB


# --- defaults -----------------------------------------------------------------------------------


def test_defaults_with_only_a_bucket() -> None:
    settings = Settings.from_env(BUCKET)
    assert settings.s3_bucket == "my-bucket"
    assert settings.s3_endpoint_url is None
    assert settings.s3_region == "us-east-1"
    assert settings.s3_key_prefix == "uploads/"
    assert settings.s3_checksum_mode == "when_required"
    assert settings.s3_addressing_style == "auto"
    assert settings.s3_max_attempts == 5
    assert settings.s3_max_pool_connections == 64
    assert settings.part_size == 10 * MiB == 10_485_760
    assert settings.multipart_threshold == 50 * MiB
    assert settings.parts_in_flight == 1
    assert settings.max_body_bytes == 0
    assert settings.max_fields == 100
    assert settings.max_field_bytes == 64 * KiB
    assert settings.max_files == 100
    assert settings.max_part_header_bytes == 16 * KiB


def test_from_env_defaults_match_the_dataclass_defaults() -> None:
    assert Settings.from_env(BUCKET) == Settings(s3_bucket="my-bucket")


def test_empty_values_mean_default() -> None:
    blank = {
        name: "   "
        for name in (
            "S3_ENDPOINT_URL",
            "S3_REGION",
            "S3_CHECKSUM_MODE",
            "S3_ADDRESSING_STYLE",
            "S3_MAX_ATTEMPTS",
            "S3_MAX_POOL_CONNECTIONS",
            "UPLOAD_PART_SIZE",
            "UPLOAD_MULTIPART_THRESHOLD",
            "UPLOAD_PARTS_IN_FLIGHT",
            "UPLOAD_MAX_BYTES",
            "UPLOAD_MAX_FIELDS",
            "UPLOAD_MAX_FIELD_SIZE",
            "UPLOAD_MAX_FILES",
            "UPLOAD_MAX_PART_HEADER_SIZE",
        )
    }
    assert from_env(**blank) == Settings(s3_bucket="my-bucket")


def test_endpoint_defaults_addressing_to_path() -> None:
    settings = from_env(S3_ENDPOINT_URL="http://127.0.0.1:9000")
    assert settings.s3_endpoint_url == "http://127.0.0.1:9000"
    assert settings.s3_addressing_style == "path"


def test_blank_endpoint_is_aws_with_auto_addressing() -> None:
    settings = from_env(S3_ENDPOINT_URL="  ")
    assert settings.s3_endpoint_url is None
    assert settings.s3_addressing_style == "auto"


@pytest.mark.parametrize("style", ["auto", "path", "virtual"])
def test_explicit_addressing_style_wins_over_the_endpoint_default(style: str) -> None:
    settings = from_env(S3_ENDPOINT_URL="https://s3.example.com", S3_ADDRESSING_STYLE=style)
    assert settings.s3_addressing_style == style


def test_values_are_read_and_trimmed() -> None:
    settings = Settings.from_env(
        {
            "S3_BUCKET": "  media  ",
            "S3_ENDPOINT_URL": " https://s3.example.com ",
            "S3_REGION": " eu-west-1 ",
            "S3_KEY_PREFIX": "tenant-a/incoming/",
            "S3_CHECKSUM_MODE": "when_supported",
            "S3_MAX_ATTEMPTS": " 3 ",
            "S3_MAX_POOL_CONNECTIONS": "128",
            "UPLOAD_PART_SIZE": "16MiB",
            "UPLOAD_MULTIPART_THRESHOLD": "0",
            "UPLOAD_PARTS_IN_FLIGHT": "4",
            "UPLOAD_MAX_BYTES": "10GiB",
            "UPLOAD_MAX_FIELDS": "0",
            "UPLOAD_MAX_FIELD_SIZE": "1KiB",
            "UPLOAD_MAX_FILES": "1",
            "UPLOAD_MAX_PART_HEADER_SIZE": "1KiB",
        }
    )
    assert settings == Settings(
        s3_bucket="media",
        s3_endpoint_url="https://s3.example.com",
        s3_region="eu-west-1",
        s3_key_prefix="tenant-a/incoming/",
        s3_checksum_mode="when_supported",
        s3_addressing_style="path",
        s3_max_attempts=3,
        s3_max_pool_connections=128,
        part_size=16 * MiB,
        multipart_threshold=0,
        parts_in_flight=4,
        max_body_bytes=10 * GiB,
        max_fields=0,
        max_field_bytes=1 * KiB,
        max_files=1,
        max_part_header_bytes=1 * KiB,
    )


def test_from_env_reads_only_the_given_mapping() -> None:
    """An explicit mapping is used as is; nothing leaks in from os.environ."""
    with pytest.raises(SettingsError, match="S3_BUCKET"):
        Settings.from_env({})


def test_settings_are_frozen() -> None:
    settings = Settings.from_env(BUCKET)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.part_size = 1  # type: ignore[misc]


# --- accepted limits ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"), [("5MiB", MIN_PART_SIZE), ("5GiB", MAX_PART_SIZE), ("64m", 64 * MiB)]
)
def test_part_size_limits_are_inclusive(value: str, expected: int) -> None:
    assert from_env(UPLOAD_PART_SIZE=value).part_size == expected


@pytest.mark.parametrize(("value", "expected"), [("0", 0), ("5GiB", MAX_SINGLE_PUT)])
def test_threshold_limits_are_inclusive(value: str, expected: int) -> None:
    assert from_env(UPLOAD_MULTIPART_THRESHOLD=value).multipart_threshold == expected


@pytest.mark.parametrize("value", [1, 64])
def test_parts_in_flight_limits_are_inclusive(value: int) -> None:
    assert from_env(UPLOAD_PARTS_IN_FLIGHT=str(value)).parts_in_flight == value


@pytest.mark.parametrize("value", [1, 20])
def test_max_attempts_limits_are_inclusive(value: int) -> None:
    assert from_env(S3_MAX_ATTEMPTS=str(value)).s3_max_attempts == value


# --- parse_size ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10485760", 10_485_760),
        ("10MiB", 10 * MiB),
        ("10 MiB", 10 * MiB),
        ("10m", 10 * MiB),
        ("10M", 10 * MiB),
        ("10mib", 10 * MiB),
        ("  10MiB  ", 10 * MiB),
        ("1GiB", GiB),
        ("1g", GiB),
        ("2TiB", 2 * TiB),
        ("1t", TiB),
        ("50MB", 50_000_000),
        ("50mb", 50_000_000),
        ("1KB", 1000),
        ("1GB", 1_000_000_000),
        ("1TB", 1_000_000_000_000),
        ("1KiB", KiB),
        ("1k", KiB),
        ("512B", 512),
        ("512b", 512),
        ("0", 0),
        ("1.5MiB", 1_572_864),
        ("0.5KiB", 512),
        ("2.0GiB", 2 * GiB),
        ("1.5KB", 1500),
    ],
)
def test_parse_size_accepts(text: str, expected: int) -> None:
    result = parse_size(text)
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "ten",
        "10XB",
        "10MiBs",
        "10 Mi B",
        "-5",
        "+5",
        "1.3B",  # not a whole number of bytes
        "1.1KiB",  # 1126.4 bytes
        ".5MiB",
        "5.",
        "1e6",
        "0x10",
        "10,000",
        "MiB",
    ],
)
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(text))):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4.1MB", 4_100_000),
        ("8.2MB", 8_200_000),
        ("16.1MB", 16_100_000),
        ("2.01KB", 2_010),
        ("4.1GB", 4_100_000_000),
        ("1.07GB", 1_070_000_000),
        ("1.005MB", 1_005_000),
    ],
)
def test_parse_size_accepts_decimal_sizes_that_are_whole_bytes(text: str, expected: int) -> None:
    """Each of these is an exact whole number of bytes, so none may be refused as fractional."""
    assert parse_size(text) == expected


def test_parse_size_is_exact_for_large_byte_counts() -> None:
    """Plain byte counts must come back exactly, not rounded through a float."""
    assert parse_size(str(2**53 + 1)) == 2**53 + 1
    assert parse_size("123456789012345678901") == 123456789012345678901


# --- errors name the variable -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("UPLOAD_PART_SIZE", "1MiB"),  # below 5 MiB
        ("UPLOAD_PART_SIZE", "5242879"),  # one byte below 5 MiB
        ("UPLOAD_PART_SIZE", "6GiB"),  # above 5 GiB
        ("UPLOAD_PART_SIZE", "abc"),
        ("UPLOAD_PART_SIZE", "-5"),
        ("UPLOAD_PARTS_IN_FLIGHT", "0"),
        ("UPLOAD_PARTS_IN_FLIGHT", "65"),
        ("UPLOAD_PARTS_IN_FLIGHT", "x"),
        ("UPLOAD_PARTS_IN_FLIGHT", "1.5"),
        ("UPLOAD_MULTIPART_THRESHOLD", "6GiB"),
        ("UPLOAD_MULTIPART_THRESHOLD", "lots"),
        ("UPLOAD_MAX_BYTES", "-1"),
        ("UPLOAD_MAX_BYTES", "1.3B"),
        ("UPLOAD_MAX_FIELDS", "-1"),
        ("UPLOAD_MAX_FIELDS", "many"),
        ("UPLOAD_MAX_FIELD_SIZE", "big"),
        ("UPLOAD_MAX_FILES", "0"),
        ("UPLOAD_MAX_FILES", "-3"),
        ("UPLOAD_MAX_PART_HEADER_SIZE", "512"),
        ("S3_CHECKSUM_MODE", "bogus"),
        ("S3_CHECKSUM_MODE", "WHEN_REQUIRED"),
        ("S3_ADDRESSING_STYLE", "bogus"),
        ("S3_ADDRESSING_STYLE", "Path"),
        ("S3_MAX_ATTEMPTS", "0"),
        ("S3_MAX_ATTEMPTS", "21"),
        ("S3_MAX_ATTEMPTS", "five"),
        ("S3_MAX_POOL_CONNECTIONS", "0"),
        ("S3_MAX_POOL_CONNECTIONS", "1025"),
    ],
)
def test_invalid_setting_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as info:
        from_env(**{name: value})
    assert name in str(info.value)


def test_invalid_size_error_quotes_the_value() -> None:
    with pytest.raises(SettingsError, match=r"UPLOAD_PART_SIZE: not a size: 'abc'"):
        from_env(UPLOAD_PART_SIZE="abc")


def test_invalid_integer_error_quotes_the_value() -> None:
    with pytest.raises(SettingsError, match=r"UPLOAD_PARTS_IN_FLIGHT: not a whole number: 'x'"):
        from_env(UPLOAD_PARTS_IN_FLIGHT="x")


def test_part_size_below_5_mib_explains_the_rule() -> None:
    with pytest.raises(SettingsError, match=r"UPLOAD_PART_SIZE must be between 5 MiB and 5 GiB"):
        from_env(UPLOAD_PART_SIZE="1MiB")


@pytest.mark.parametrize("environ", [{}, {"S3_BUCKET": ""}, {"S3_BUCKET": "   "}])
def test_missing_bucket(environ: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match="S3_BUCKET is required"):
        Settings.from_env(environ)


def test_settings_error_is_a_value_error() -> None:
    assert issubclass(SettingsError, ValueError)


def test_constructor_validates_too() -> None:
    with pytest.raises(SettingsError, match="UPLOAD_PARTS_IN_FLIGHT"):
        Settings(s3_bucket="b", parts_in_flight=0)
    with pytest.raises(SettingsError, match="S3_BUCKET"):
        Settings(s3_bucket="")


def test_auth_tokens_are_comma_separated_and_trimmed() -> None:
    settings = Settings.from_env(
        {"S3_BUCKET": "b", "UPLOAD_AUTH_TOKENS": " aaaaaaaaaaaaaaaa , bbbbbbbbbbbbbbbb,, "}
    )
    assert settings.auth_tokens == ("aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb")
    assert Settings.from_env({"S3_BUCKET": "b"}).auth_tokens == ()


@pytest.mark.parametrize("tokens", ["short", "aaaaaaaaaaaaaaaa,tiny"])
def test_short_auth_tokens_are_refused(tokens: str) -> None:
    with pytest.raises(SettingsError, match="UPLOAD_AUTH_TOKENS"):
        Settings.from_env({"S3_BUCKET": "b", "UPLOAD_AUTH_TOKENS": tokens})


@pytest.mark.parametrize(("raw", "expected"), [("", 60.0), ("0", 0.0), ("2.5", 2.5), ("30s", 30.0)])
def test_idle_timeout(raw: str, expected: float) -> None:
    settings = Settings.from_env({"S3_BUCKET": "b", "UPLOAD_IDLE_TIMEOUT": raw})
    assert settings.idle_timeout == expected


@pytest.mark.parametrize("raw", ["soon", "-1"])
def test_bad_idle_timeout_names_the_variable(raw: str) -> None:
    with pytest.raises(SettingsError, match="UPLOAD_IDLE_TIMEOUT"):
        Settings.from_env({"S3_BUCKET": "b", "UPLOAD_IDLE_TIMEOUT": raw})


def test_allowed_types_are_parsed_and_checked() -> None:
    env = {"S3_BUCKET": "b", "UPLOAD_ALLOWED_TYPES": " Image/* , .PDF,video/mp4 "}
    assert Settings.from_env(env).allowed_types == ("image/*", ".pdf", "video/mp4")
    with pytest.raises(SettingsError, match="UPLOAD_ALLOWED_TYPES"):
        Settings.from_env({"S3_BUCKET": "b", "UPLOAD_ALLOWED_TYPES": "pdf"})
