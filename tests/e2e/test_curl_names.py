"""Filenames as real curl sends them (`curl -F 'file=@path;filename=...'`), to a real uvicorn
app storing into `rclone serve s3`: the answer's filename and the object's metadata are the
name given, the bytes intact. And the header lines curl writes are the ones
tests/unit/forms/test_differential.py's corpus uses.

curl >= 7.81 writes names as browsers do (`%22`, `%0D`, `%0A`); `--form-escape` writes them
the old way (backslash escapes), which the service reads as docs/api.md ("Filenames") says.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest

from app.forms.keys import ORIGINAL_NAME_KEY
from harness.store import Bucket, MiB
from tests.e2e.conftest import Capture, StartApp
from tests.unit.forms.test_differential import disposition, typed

#: Names given to curl, which the service must read back as they are.
NAMES = [
    'my "best" photo\\x.txt',
    "back\\\\slash\\",
    "line\r\nbreak.txt",
    "ünïcödé €.txt",
    "😀 🎉 👩\u200d💻.png",
    "semi;colon, comma=x.txt",
]
#: With `--form-escape`: a name with a `"` comes back whole; one with `\` but no `"` keeps
#: the escape's doubled backslash (docs/api.md, "Filenames").
ESCAPED_NAMES = {
    'say "hi" \\o/.txt': 'say "hi" \\o/.txt',
    "a\\b.txt": "a\\\\b.txt",
}


@pytest.fixture(autouse=True)
def curl_7_81(curl_bin: str) -> None:
    """These tests are about curl's encoding since 7.81 (and its --form-escape option)."""
    version = subprocess.run([curl_bin, "--version"], capture_output=True, text=True).stdout
    numbers = tuple(int(n) for n in version.split()[1].split(".")[:2])
    if numbers < (7, 81):
        pytest.skip(f"curl {version.split()[1]} writes names the old way; these need 7.81+")


def form_arg(field: str, path: Path, name: str, media_type: str = "text/plain") -> str:
    """curl's -F value for a file sent under `name` (its own quoting: `\\"` and `\\\\`)."""
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'{field}=@{path};filename="{quoted}";type={media_type}'


def curl(curl_bin: str, url: str, *args: str) -> str:
    result = subprocess.run(
        [curl_bin, "--silent", "--show-error", "--noproxy", "*", "--max-time", "60", *args, url],
        capture_output=True,
        check=True,
        timeout=90,
    )
    return result.stdout.decode()


def files_of(tmp_path: Path, count: int) -> list[tuple[Path, bytes]]:
    files = []
    for index in range(count):
        path = tmp_path / f"file-{index}.bin"
        data = bytes(range(256)) * (index + 1) + b"\r\n--" * index
        path.write_bytes(data)
        files.append((path, data))
    return files


def assert_stored_as(bucket: Bucket, stored: dict[str, object], name: str, data: bytes) -> None:
    """Answered and kept in the metadata under `name`; the bytes read back intact."""
    assert stored["filename"] == name
    key = str(stored["key"])
    metadata = {k.lower(): v for k, v in bucket.head(key)["Metadata"].items()}
    assert unquote(metadata[ORIGINAL_NAME_KEY]) == name
    digest = hashlib.sha256(data).hexdigest()
    assert stored["sha256"] == digest == bucket.sha256(key)


def test_curl_filenames_are_answered_and_stored_as_named(
    bucket: Bucket, start_app: StartApp, curl_bin: str, tmp_path: Path
) -> None:
    app = start_app(bucket, part_size=5 * MiB)
    files = files_of(tmp_path, len(NAMES))
    forms = [
        arg
        for (path, _), n in zip(files, NAMES, strict=True)
        for arg in ("-F", form_arg("file", path, n))
    ]
    answer = json.loads(curl(curl_bin, f"{app.url}/uploads", *forms))
    assert len(answer["files"]) == len(NAMES)
    for stored, name, (_, data) in zip(answer["files"], NAMES, files, strict=True):
        assert stored["content_type"] == "text/plain"
        assert_stored_as(bucket, stored, name, data)
    assert bucket.incomplete_uploads() == []


def test_curl_form_escape_names_are_read_as_documented(
    bucket: Bucket, start_app: StartApp, curl_bin: str, tmp_path: Path
) -> None:
    app = start_app(bucket, part_size=5 * MiB)
    files = files_of(tmp_path, len(ESCAPED_NAMES))
    forms = [
        arg
        for (path, _), name in zip(files, ESCAPED_NAMES, strict=True)
        for arg in ("-F", form_arg("file", path, name))
    ]
    answer = json.loads(curl(curl_bin, f"{app.url}/uploads", "--form-escape", *forms))
    for stored, read, (_, data) in zip(answer["files"], ESCAPED_NAMES.values(), files, strict=True):
        assert_stored_as(bucket, stored, read, data)


@pytest.mark.parametrize(
    ("options", "field", "filename", "written"),
    [
        (
            (),
            'na"me\\x',
            'my "best" photo\\x\r\n😀.txt',
            ("na%22me\\x", "my %22best%22 photo\\x%0D%0A😀.txt"),
        ),
        (
            ("--form-escape",),
            'na"me\\x',
            'say "hi" \\o/.txt',
            ('na\\"me\\\\x', 'say \\"hi\\" \\\\o/.txt'),
        ),
    ],
    ids=["curl", "form-escape"],
)
def test_curl_writes_the_header_lines_of_the_differential_corpus(
    capture: Capture,
    curl_bin: str,
    tmp_path: Path,
    options: tuple[str, ...],
    field: str,
    filename: str,
    written: tuple[str, str],
) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"a")
    curl(curl_bin, capture.url, *options, "-F", form_arg(field, path, filename))
    expected = (disposition(*written) + typed("text/plain") + "\r\na\r\n").encode()
    assert expected in capture.bodies[0], capture.bodies[0]
