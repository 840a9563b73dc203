"""app/units.py: byte sizes read as people write them, and written back the same way."""

from __future__ import annotations

import re

import pytest

from app.units import GiB, KiB, MiB, TiB, format_size, parse_size


def test_unit_constants() -> None:
    assert (KiB, MiB, GiB, TiB) == (1024, 1024**2, 1024**3, 1024**4)


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


# --- format_size --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (0, "0"),
        (1, "1"),
        (1000, "1000"),
        (1023, "1023"),
        (KiB, "1KiB"),
        (64 * KiB, "64KiB"),
        (1536, "1536"),  # 1.5 KiB: not a whole number of any unit
        (10 * MiB, "10MiB"),
        (MiB + KiB, "1025KiB"),
        (512 * MiB, "512MiB"),
        (5 * GiB, "5GiB"),
        (1024 * GiB, "1TiB"),
        (3 * TiB, "3TiB"),
        (1024 * TiB, "1024TiB"),
    ],
)
def test_format_size_uses_the_largest_unit_that_divides(size: int, expected: str) -> None:
    assert format_size(size) == expected


@pytest.mark.parametrize("size", [0, 1, 999, KiB, 1536, 10 * MiB, MiB + 1, 5 * GiB, 7 * TiB + MiB])
def test_format_size_reads_back_with_parse_size(size: int) -> None:
    assert parse_size(format_size(size)) == size
