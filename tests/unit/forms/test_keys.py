"""safe_filename and object_key: whatever the client sends, the key stays inside the prefix."""

from __future__ import annotations

import re
import unicodedata
import urllib.parse
import uuid

import pytest

from app.forms.keys import (
    MAX_ENCODED_NAME,
    MAX_NAME_BYTES,
    encoded_original_name,
    object_key,
    safe_filename,
)

CONTROL_CHARACTERS = [chr(c) for c in (*range(0x00, 0x20), *range(0x7F, 0xA0))]

FORMAT_CHARACTERS = [
    "\u202e",  # right-to-left override
    "\u202d",  # left-to-right override
    "\u202a",  # left-to-right embedding
    "\u202b",  # right-to-left embedding
    "\u202c",  # pop directional formatting
    "\u2066",  # left-to-right isolate
    "\u2067",  # right-to-left isolate
    "\u2068",  # first strong isolate
    "\u2069",  # pop directional isolate
    "\u200e",  # left-to-right mark
    "\u200f",  # right-to-left mark
    "\u061c",  # arabic letter mark
    "\u200b",  # zero width space
    "\u2060",  # word joiner
    "\ufeff",  # byte order mark
    "\u00ad",  # soft hyphen
]

HOSTILE_NAMES = [
    "",
    ".",
    "..",
    "...",
    " ",
    "/",
    "\\",
    "../../etc/passwd",
    "../../../../../../../../etc/shadow",
    "..\\..\\windows\\system32\\config\\SAM",
    "..\\../..\\../mixed.txt",
    "/etc/passwd",
    "/",
    "C:\\dir\\x.txt",
    "C:/dir/x.txt",
    "\\\\server\\share\\report.pdf",
    "....//....//etc/hosts",
    "a/../../b.txt",
    "x/..",
    "x/../",
    "../",
    ". ./. .",
    "./.hidden",
    "evil\x00.txt",
    "evil.txt\x00.jpg",
    "line\r\nbreak.txt",
    "\r\n\r\nSet-Cookie: a=b",
    "\x1b[31mred\x1b[0m.txt",
    "\x1b]0;title\x07.txt",
    "tab\there.txt",
    "del\x7f.txt",
    "nel\x85.txt",
    "invoice\u202efdp.exe",
    "\u202e../../x",
    "..\u202e/..\u202e",
    "\u200b..",
    "\u200b../\u200b..",
    ".\u200b.",
    "lone\ud800surrogate.txt",
    "private\ue000use.txt",
    "unassigned\u0378.txt",
    "%2e%2e/%2e%2e/x",
    "a" * 1000,
    "../" * 400 + "deep.txt",
    "." * 1000,
    "/" * 1000,
    "😀" * 300 + ".png",
    "я" * 500 + ".pdf",
    "文" * 400 + ".docx",
    "e\u0301" * 300,
]


def is_control_or_format(ch: str) -> bool:
    return unicodedata.category(ch).startswith("C")


# --- path segments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("../../../../../../tmp/x.sh", "x.sh"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        ("..\\../..\\../mixed.txt", "mixed.txt"),
        ("a/../../b.txt", "b.txt"),
        ("....//....//etc/hosts", "hosts"),
        ("/etc/passwd", "passwd"),
        ("/absolute/path/to/report.pdf", "report.pdf"),
        ("C:\\dir\\x.txt", "x.txt"),
        ("C:\\\\dir\\\\x.txt", "x.txt"),
        ("C:/dir/x.txt", "x.txt"),
        ("\\\\server\\share\\report.pdf", "report.pdf"),
        ("dir/sub\\file.tar.gz", "file.tar.gz"),
        ("%2e%2e/%2e%2e/x", "x"),
    ],
)
def test_only_the_last_path_segment_is_kept(name: str, expected: str) -> None:
    assert safe_filename(name) == expected


def test_result_never_contains_a_separator() -> None:
    for name in HOSTILE_NAMES:
        result = safe_filename(name)
        assert "/" not in result, repr(name)
        assert "\\" not in result, repr(name)


# --- control and format characters --------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a\x00b.txt", "ab.txt"),
        ("evil.txt\x00.jpg", "evil.txt.jpg"),
        ("line\r\nbreak.txt", "linebreak.txt"),
        ("evil\r\nSet-Cookie: x.txt", "evilSet-Cookie: x.txt"),
        ("\x1b[2Jclear.txt", "[2Jclear.txt"),
        ("tab\there.txt", "tabhere.txt"),
        ("del\x7f.txt", "del.txt"),
        ("nel\x85.txt", "nel.txt"),
    ],
)
def test_control_characters_are_removed(name: str, expected: str) -> None:
    assert safe_filename(name) == expected


@pytest.mark.parametrize("ch", CONTROL_CHARACTERS, ids=lambda ch: f"U+{ord(ch):04X}")
def test_every_c0_and_c1_control_character_is_removed(ch: str) -> None:
    assert safe_filename(f"a{ch}b.txt") == "ab.txt"


def test_right_to_left_override_is_removed() -> None:
    # Shown as "invoiceexe.pdf" by a terminal or browser that honours the override.
    assert safe_filename("invoice\u202efdp.exe") == "invoicefdp.exe"


@pytest.mark.parametrize("ch", FORMAT_CHARACTERS, ids=lambda ch: f"U+{ord(ch):04X}")
def test_format_characters_are_removed(ch: str) -> None:
    assert safe_filename(f"re{ch}port.pdf") == "report.pdf"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("lone\ud800surrogate.txt", "lonesurrogate.txt"),
        ("private\ue000use.txt", "privateuse.txt"),
        ("unassigned\u0378.txt", "unassigned.txt"),
    ],
)
def test_surrogate_private_use_and_unassigned_characters_are_removed(
    name: str, expected: str
) -> None:
    result = safe_filename(name)
    assert result == expected
    result.encode()  # must be valid UTF-8: a lone surrogate would raise here


# --- fallback -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "..",
        "...",
        " ",
        "   ",
        " . . ",
        "/",
        "\\",
        "///",
        "./",
        "../",
        "..\\..\\",
        "dir/",
        "x/..",
        " / . / ",
        "." * 1000,
        "\x00",
        "\r\n",
        "\u202e",
        "\u200b..",
        ".\u200b.",
    ],
)
def test_names_with_nothing_left_fall_back_to_file(name: str) -> None:
    assert safe_filename(name) == "file"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("  report.pdf  ", "report.pdf"),
        ("...hidden", "hidden"),
        (".bashrc", "bashrc"),
        ("trailing.", "trailing"),
        ("name. . .", "name"),
    ],
)
def test_dots_and_spaces_are_trimmed_from_the_ends(name: str, expected: str) -> None:
    assert safe_filename(name) == expected


# --- ordinary names survive ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "report.pdf",
        "Résumé 2024 (final).pdf",
        "отчёт за квартал.docx",
        "写真 2024-01-01.jpg",
        "😀 party.png",
        "archive.tar.gz",
        "no extension",
        "a..b.txt",
        "x" * MAX_NAME_BYTES,
    ],
)
def test_ordinary_names_are_unchanged(name: str) -> None:
    assert safe_filename(name) == name


# --- length -------------------------------------------------------------------------------------


def test_max_name_bytes() -> None:
    assert MAX_NAME_BYTES == 200


def test_a_1000_character_name_is_cut_and_keeps_its_extension() -> None:
    name = "a" * 996 + ".txt"
    assert len(name) == 1000
    result = safe_filename(name)
    assert len(result.encode()) == MAX_NAME_BYTES
    assert result == "a" * (MAX_NAME_BYTES - 4) + ".txt"


def test_long_name_without_extension_is_cut() -> None:
    assert safe_filename("b" * 1000) == "b" * MAX_NAME_BYTES


def test_one_byte_too_long_is_cut() -> None:
    assert safe_filename("c" * (MAX_NAME_BYTES + 1)) == "c" * MAX_NAME_BYTES
    assert safe_filename("c" * (MAX_NAME_BYTES - 3) + ".txt") == "c" * (MAX_NAME_BYTES - 4) + ".txt"


def test_extension_of_16_bytes_is_kept() -> None:
    ext = "x" * 16
    result = safe_filename("a" * 300 + "." + ext)
    assert result.endswith("." + ext)
    assert len(result.encode()) == MAX_NAME_BYTES


def test_extension_over_16_bytes_is_treated_as_part_of_the_name() -> None:
    result = safe_filename("a" * 300 + "." + "x" * 17)
    assert result == "a" * MAX_NAME_BYTES


def test_multibyte_extension_is_kept() -> None:
    result = safe_filename("a" * 300 + ".日本")
    assert result == "a" * (MAX_NAME_BYTES - 7) + ".日本"
    assert len(result.encode()) == MAX_NAME_BYTES


def test_cut_stem_does_not_end_in_a_dot_or_space() -> None:
    result = safe_filename("word. " * 100 + "end.txt")
    assert result.endswith(".txt")
    stem = result.removesuffix(".txt")
    assert not stem.endswith((" ", "."))
    assert len(result.encode()) <= MAX_NAME_BYTES


@pytest.mark.parametrize(
    ("char", "ext", "width"),
    [
        ("😀", ".png", 4),  # emoji: 4 bytes
        ("я", ".pdf", 2),  # Cyrillic: 2 bytes
        ("文", ".docx", 3),  # CJK: 3 bytes
        ("é", ".txt", 2),  # Latin-1 supplement: 2 bytes
    ],
)
def test_multibyte_names_are_cut_on_character_boundaries(char: str, ext: str, width: int) -> None:
    assert len(char.encode()) == width
    result = safe_filename(char * 1000 + ext)
    encoded = result.encode()
    assert len(encoded) <= MAX_NAME_BYTES
    assert encoded.decode("utf-8") == result  # valid UTF-8, nothing replaced
    assert "\ufffd" not in result
    assert result.endswith(ext)
    stem = result.removesuffix(ext)
    # Readable: only whole copies of the character, as many as fit.
    expected_count = (MAX_NAME_BYTES - len(ext.encode())) // width
    assert stem == char * expected_count


def test_cut_through_a_multibyte_character_drops_the_partial_character() -> None:
    # 195 bytes of "a", then 4-byte emoji: the 196-byte room ends inside the first emoji.
    result = safe_filename("a" * 195 + "😀" * 10 + ".txt")
    assert result == "a" * 195 + ".txt"


def test_every_result_fits_and_is_valid_utf8() -> None:
    for name in HOSTILE_NAMES:
        result = safe_filename(name)
        assert 0 < len(result.encode("utf-8")) <= MAX_NAME_BYTES, repr(name)
        assert "\ufffd" not in result, repr(name)


# --- normalisation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("e\u0301.txt", "\u00e9.txt"),  # e + combining acute -> é
        ("Cafe\u0301.txt", "Caf\u00e9.txt"),
        ("A\u030angstro\u0308m.txt", "\u00c5ngstr\u00f6m.txt"),
        ("\u1100\u1161.txt", "\uac00.txt"),  # Hangul jamo -> 가
    ],
)
def test_names_are_nfc_normalised(name: str, expected: str) -> None:
    result = safe_filename(name)
    assert result == expected
    assert unicodedata.is_normalized("NFC", result)


def test_decomposed_and_composed_names_give_the_same_result() -> None:
    assert safe_filename("re\u0301sume\u0301.pdf") == safe_filename("r\u00e9sum\u00e9.pdf")


@pytest.mark.parametrize("ch", ["\u200b", "\u202e", "\x00", "\ufeff"], ids=ascii)
def test_result_is_nfc_even_when_a_removed_character_split_a_combining_sequence(ch: str) -> None:
    """A removed character between a letter and its accent must not leave a decomposed name."""
    result = safe_filename(f"e{ch}\u0301.txt")
    assert result == "\u00e9.txt"
    assert unicodedata.is_normalized("NFC", result)


def test_safe_filename_is_idempotent() -> None:
    for name in HOSTILE_NAMES:
        once = safe_filename(name)
        assert safe_filename(once) == once, repr(name)


# --- object keys --------------------------------------------------------------------------------

KEY_RE = re.compile(
    r"(?P<uuid>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/(?P<name>.+)"
)


@pytest.mark.parametrize("prefix", ["uploads/", "", "tenant-a/2024/"])
def test_object_key_layout(prefix: str) -> None:
    key = object_key(prefix, "../../report.pdf")
    assert key.startswith(prefix)
    match = KEY_RE.fullmatch(key[len(prefix) :])
    assert match is not None, key
    parsed = uuid.UUID(match["uuid"])
    assert parsed.version == 4
    assert str(parsed) == match["uuid"]
    assert match["name"] == "report.pdf"


def test_object_key_uses_the_safe_filename() -> None:
    for name in HOSTILE_NAMES:
        key = object_key("uploads/", name)
        assert key.endswith("/" + safe_filename(name)), repr(name)


def test_object_keys_are_unique() -> None:
    first = object_key("uploads/", "same.txt")
    second = object_key("uploads/", "same.txt")
    assert first != second
    keys = {object_key("uploads/", "same.txt") for _ in range(1000)}
    assert len(keys) == 1000


@pytest.mark.parametrize("prefix", ["uploads/", "", "a/b/c/"])
def test_hostile_names_stay_inside_the_prefix(prefix: str) -> None:
    for name in HOSTILE_NAMES:
        key = object_key(prefix, name)
        rest = key[len(prefix) :]
        assert key.startswith(prefix), repr(name)
        assert rest.count("/") == 1, repr(name)
        assert ".." not in key, repr(name)
        assert "\\" not in key, repr(name)
        assert not any(is_control_or_format(ch) for ch in key), repr(name)
        assert all(segment not in ("", ".", "..") for segment in rest.split("/")), repr(name)
        assert len(key.encode()) <= len(prefix.encode()) + 36 + 1 + MAX_NAME_BYTES
        assert KEY_RE.fullmatch(rest) is not None, repr(name)


def test_dots_inside_a_name_are_kept_but_can_never_form_a_path_segment() -> None:
    """`..` inside one segment is just two characters; it only matters as a whole segment."""
    key = object_key("uploads/", "..%2f..%2fsecret..txt")
    rest = key.removeprefix("uploads/")
    assert rest.count("/") == 1
    assert rest.split("/")[1] == "%2f..%2fsecret..txt"


@pytest.mark.parametrize(
    "name",
    ["👨\u200d👩\u200d👧.png", "می\u200cخواهم.txt"],  # noqa: RUF001
    ids=["zwj", "zwnj"],
)
def test_joiners_are_kept_for_emoji_and_scripts(name: str) -> None:
    assert safe_filename(name) == name


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("image/png", "image/png"),
        ("Video/MP4", "video/mp4"),
        ("application/vnd.ms-excel", "application/vnd.ms-excel"),
        (None, "application/octet-stream"),
        ("", "application/octet-stream"),
        ("text/pl\x00ain", "application/octet-stream"),
        ("text/plain\r\nX-Injected: 1", "application/octet-stream"),
        ("nonsense", "application/octet-stream"),
    ],
)
def test_clean_content_type(value: str | None, expected: str) -> None:
    from app.forms.upload import clean_content_type

    assert clean_content_type(value) == expected


@pytest.mark.parametrize(
    "name", ["plain.txt", "../../a b.txt", "a\x00\r\n\u202eb", "日本語 😀.png", "%41%", ""]
)
def test_original_name_is_ascii_and_round_trips(name: str) -> None:
    encoded = encoded_original_name(name)
    assert encoded.isascii() and (encoded.isprintable() or not encoded)
    assert not set(encoded) & set(" \r\n\"'\\;")
    assert urllib.parse.unquote(encoded) == name


@pytest.mark.parametrize("name", ["a" * 5000, "é" * 3000, "😀" * 2000])
def test_original_name_is_cut_to_fit_metadata(name: str) -> None:
    encoded = encoded_original_name(name)
    assert len(encoded) <= MAX_ENCODED_NAME
    kept = urllib.parse.unquote(encoded)
    assert name.startswith(kept) and len(encoded) > MAX_ENCODED_NAME * 0.8
