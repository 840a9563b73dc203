"""Settings: documented defaults, the environment read once, clear errors, the docs table."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from app.envvars import variable_of
from app.settings import (
    TABLE_BEGIN,
    TABLE_END,
    Settings,
    SettingsError,
    settings_table,
    with_settings_table,
)
from app.settings import main as settings_main
from app.storage.partsize import MAX_PART_SIZE, MAX_SINGLE_PUT, MIN_PART_SIZE
from app.units import GiB, KiB, MiB

BUCKET = {"S3_BUCKET": "my-bucket"}


def from_env(**extra: str) -> Settings:
    return Settings.from_env({**BUCKET, **extra})


# --- the limits the rules use -------------------------------------------------------------------


def test_s3_limits() -> None:
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


def test_auth_tokens_may_be_named() -> None:
    settings = Settings.from_env(
        {"S3_BUCKET": "b", "UPLOAD_AUTH_TOKENS": "alice:aaaaaaaaaaaaaaaa, bbbbbbbbbbbbbbbb"}
    )
    assert [(t.name, t.secret) for t in settings.bearer_tokens] == [
        ("alice", "aaaaaaaaaaaaaaaa"),
        ("", "bbbbbbbbbbbbbbbb"),
    ]


@pytest.mark.parametrize(
    "tokens", ["short", "aaaaaaaaaaaaaaaa,tiny", "alice:short", "bad name:aaaaaaaaaaaaaaaa"]
)
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


@pytest.mark.parametrize(("raw", "expected"), [("minio", "minio"), (" MinIO ", "minio"), ("", "")])
def test_provider_is_trimmed_and_lower_cased(raw: str, expected: str) -> None:
    assert from_env(S3_PROVIDER=raw).s3_provider == expected


def test_unknown_provider_lists_the_known_ones() -> None:
    with pytest.raises(SettingsError, match=r"^S3_PROVIDER must be one of aws, minio, b2, r2, gen"):
        from_env(S3_PROVIDER="wasabi")


@pytest.mark.parametrize(
    ("raw", "expected"), [("", ""), ("  a/b/ ", "  a/b/ "), ("tenant/", "tenant/")]
)
def test_key_prefix_is_taken_as_given(raw: str, expected: str) -> None:
    """Unlike every other variable, S3_KEY_PREFIX is not trimmed, and set but empty is no prefix."""
    assert from_env(S3_KEY_PREFIX=raw).s3_key_prefix == expected


@pytest.mark.parametrize(("raw", "expected"), [("off", "off"), (" ON ", "on"), ("Auto", "auto")])
def test_payload_signing_is_lower_cased(raw: str, expected: str) -> None:
    assert from_env(S3_PAYLOAD_SIGNING=raw).s3_payload_signing == expected


def test_bad_choice_from_the_environment_quotes_the_value() -> None:
    with pytest.raises(
        SettingsError, match=r"^S3_PAYLOAD_SIGNING: not auto, on or off: 'sometimes'$"
    ):
        from_env(S3_PAYLOAD_SIGNING="sometimes")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("s3_checksum_mode", "bogus", "S3_CHECKSUM_MODE must be when_required or when_supported"),
        ("s3_payload_signing", "OFF", "S3_PAYLOAD_SIGNING must be auto, on or off"),
        ("s3_addressing_style", "dns", "S3_ADDRESSING_STYLE must be auto, path or virtual"),
        ("s3_provider", "wasabi", "S3_PROVIDER must be one of"),
        ("s3_max_parts", 10_001, "S3_MAX_PARTS must be 0 (provider's) to 10000"),
        ("memory_budget", MIN_PART_SIZE - 1, "UPLOAD_MEMORY_BUDGET must be at least 5 MiB"),
        ("max_concurrent", -1, "UPLOAD_MAX_CONCURRENT must be 0 (no limit) or more"),
        ("idle_timeout", -0.5, "UPLOAD_IDLE_TIMEOUT must be 0 (off) or more seconds"),
        ("allowed_types", ("pdf",), "UPLOAD_ALLOWED_TYPES must list content types"),
    ],
)
def test_constructor_names_the_variable_and_its_rule(
    field: str, value: object, message: str
) -> None:
    with pytest.raises(SettingsError, match=f"^{re.escape(message)}"):
        Settings(s3_bucket="b", **{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("on", True),
        ("ON", True),
        ("1", True),
        ("true", True),
        ("yes", True),
        ("off", False),
        ("0", False),
        ("False", False),
        ("no", False),
        ("", False),
    ],
)
def test_flags_read_on_and_off(raw: str, expected: bool) -> None:
    settings = from_env(UPLOAD_CLIENT_KEYS=raw, UPLOAD_NO_OVERWRITE=raw)
    assert (settings.client_keys, settings.no_overwrite) == (expected, expected)


def test_bad_flag_quotes_the_value() -> None:
    with pytest.raises(SettingsError, match=r"^UPLOAD_NO_OVERWRITE: not on/off: 'maybe'$"):
        from_env(UPLOAD_NO_OVERWRITE="maybe")


def test_from_env_without_a_mapping_reads_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("S3_BUCKET", "from-the-process")
    monkeypatch.setenv("UPLOAD_PARTS_IN_FLIGHT", "3")
    settings = Settings.from_env()
    assert (settings.s3_bucket, settings.parts_in_flight) == ("from-the-process", 3)


def test_a_value_that_cannot_be_read_is_reported_before_a_missing_bucket() -> None:
    with pytest.raises(SettingsError, match=r"^UPLOAD_PART_SIZE: not a size"):
        Settings.from_env({"UPLOAD_PART_SIZE": "huge"})


# --- declarations and the docs table ------------------------------------------------------------

PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_field_declares_its_own_variable() -> None:
    names = [variable_of(field).name for field in dataclasses.fields(Settings)]
    assert len(names) == len(set(names))
    assert all(name.startswith(("S3_", "UPLOAD_")) for name in names)


#: Fields whose table cell shows the default as one value (others explain it in words).
SHOWN_AS_A_VALUE = [
    field
    for field in dataclasses.fields(Settings)
    if re.fullmatch(r"`[^`]*`", variable_of(field).default_doc)
]


@pytest.mark.parametrize("field", SHOWN_AS_A_VALUE, ids=lambda field: field.name)
def test_a_documented_default_reads_back_as_the_default(field: dataclasses.Field[Any]) -> None:
    """Set to what the table shows, the variable gives the field's default."""
    variable = variable_of(field)
    environ = {**BUCKET, variable.name: variable.default_doc.strip("`")}
    assert getattr(Settings.from_env(environ), field.name) == field.default


def test_table_shows_sizes_with_units() -> None:
    rows = {row.split(" | ")[0]: row for row in settings_table().splitlines()}
    assert rows["| `UPLOAD_PART_SIZE`"].split(" | ")[1] == "`10MiB`"
    assert rows["| `UPLOAD_MAX_FIELD_SIZE`"].split(" | ")[1] == "`64KiB`"
    assert rows["| `UPLOAD_IDLE_TIMEOUT`"].split(" | ")[1] == "`60`"
    assert rows["| `UPLOAD_CLIENT_KEYS`"].split(" | ")[1] == "`off`"
    assert len(rows) == 2 + len(dataclasses.fields(Settings))


def test_docs_page_table_matches_the_declarations() -> None:
    page = PAGE.read_text(encoding="utf-8")
    assert with_settings_table(page) == page, (
        "the settings table of docs/configuration.md is stale: "
        "run `python -m app.settings --write-docs docs/configuration.md`"
    )


def test_write_docs_replaces_only_the_table(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(f"# Title\n\n{TABLE_BEGIN}\n| old | table |\n{TABLE_END}\n\nAfter.\n")
    assert settings_main(["--write-docs", str(page)]) == 0
    assert (
        page.read_text() == f"# Title\n\n{TABLE_BEGIN}\n{settings_table()}{TABLE_END}\n\nAfter.\n"
    )


def test_write_docs_refuses_a_page_without_the_markers(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Title\n")
    with pytest.raises(ValueError, match="the page needs"):
        settings_main(["--write-docs", str(page)])
    assert page.read_text() == "# Title\n"


def test_hooks_are_off_unless_a_url_is_set() -> None:
    settings = Settings.from_env({"S3_BUCKET": "b"})
    assert settings.hook_url is None and not settings.hook_fail_open


def test_hook_settings_are_read() -> None:
    settings = Settings.from_env(
        {
            "S3_BUCKET": "b",
            "UPLOAD_HOOK_URL": "https://app.example.com/upload-hooks",
            "UPLOAD_HOOK_SECRET": "0123456789abcdef",
            "UPLOAD_HOOK_TIMEOUT": "2.5",
            "UPLOAD_HOOK_FAIL_OPEN": "on",
            "UPLOAD_HOOK_PRE_CREATE_RETRIES": "0",
            "UPLOAD_HOOK_DELIVERY_ATTEMPTS": "3",
            "UPLOAD_HOOK_BACKOFF": "0.5",
            "UPLOAD_HOOK_BACKOFF_MAX": "30",
            "UPLOAD_HOOK_POLL_INTERVAL": "1",
        }
    )
    assert settings.hook_url == "https://app.example.com/upload-hooks"
    assert (settings.hook_timeout, settings.hook_fail_open) == (2.5, True)
    assert (settings.hook_pre_create_retries, settings.hook_delivery_attempts) == (0, 3)
    assert (settings.hook_backoff, settings.hook_backoff_max) == (0.5, 30.0)
    assert settings.hook_poll_interval == 1.0


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"UPLOAD_HOOK_URL": "https://a.example/h"}, "UPLOAD_HOOK_SECRET is required"),
        ({"UPLOAD_HOOK_URL": "ftp://a.example/h", "UPLOAD_HOOK_SECRET": "x" * 16}, "http"),
        ({"UPLOAD_HOOK_URL": "https://a.example/h", "UPLOAD_HOOK_SECRET": "short"}, "16"),
        ({"UPLOAD_HOOK_TIMEOUT": "0"}, "UPLOAD_HOOK_TIMEOUT"),
        ({"UPLOAD_HOOK_DELIVERY_ATTEMPTS": "0"}, "UPLOAD_HOOK_DELIVERY_ATTEMPTS"),
        ({"S3_KEY_PREFIX": ".upload-hooks/mine/"}, "S3_KEY_PREFIX"),
        ({"S3_KEY_PREFIX": ".upload"}, "S3_KEY_PREFIX"),
        ({"S3_KEY_PREFIX": "."}, "S3_KEY_PREFIX"),
    ],
)
def test_invalid_hook_settings_are_refused(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({"S3_BUCKET": "b", **environ})


def test_the_secret_is_not_in_a_settings_error() -> None:
    secret = "only-fifteen-ch"
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(
            {
                "S3_BUCKET": "b",
                "UPLOAD_HOOK_URL": "https://a.example/",
                "UPLOAD_HOOK_SECRET": secret,
            }
        )
    assert secret not in str(caught.value)
