"""The state file of `upload --resumable`: found again only for the same endpoint and the same,
unchanged file; written whole; gone once removed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.client.resumestate import FileIdentity, ResumeState, UploadRecord, default_state_dir

ENDPOINT = "http://svc/files/"


@pytest.fixture
def file(tmp_path: Path) -> Path:
    path = tmp_path / "video.bin"
    path.write_bytes(b"x" * 100)
    return path


def test_a_saved_record_is_found_for_the_same_file_and_endpoint(
    tmp_path: Path, file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = ResumeState(tmp_path / "state")
    identity = FileIdentity.of(file)
    record = UploadRecord(ENDPOINT, identity, "http://svc/files/abc")
    state.save(record)
    # Found from a relative path too: records are keyed by the absolute path.
    monkeypatch.chdir(file.parent)
    assert state.find(ENDPOINT, FileIdentity.of(file.name)) == record
    assert state.find("http://other/files/", identity) is None
    assert list((tmp_path / "state").iterdir()) == [state._record_path(ENDPOINT, identity.path)]
    state.remove(ENDPOINT, identity)
    assert state.find(ENDPOINT, identity) is None
    state.remove(ENDPOINT, identity)  # removing twice is fine


@pytest.mark.parametrize("change", ["size", "mtime"])
def test_a_changed_file_does_not_match_its_record(tmp_path: Path, file: Path, change: str) -> None:
    state = ResumeState(tmp_path)
    before = FileIdentity.of(file)
    state.save(UploadRecord(ENDPOINT, before, "http://svc/files/abc"))
    if change == "size":
        file.write_bytes(b"y" * 101)
        os.utime(file, ns=(before.mtime_ns, before.mtime_ns))
    else:
        os.utime(file, ns=(before.mtime_ns + 10**9, before.mtime_ns + 10**9))
    assert state.find(ENDPOINT, FileIdentity.of(file)) is None


def test_an_unreadable_record_means_no_record(tmp_path: Path, file: Path) -> None:
    state = ResumeState(tmp_path)
    identity = FileIdentity.of(file)
    state._record_path(ENDPOINT, identity.path).write_text("{not json")
    assert state.find(ENDPOINT, identity) is None


def test_the_default_directory_follows_xdg_cache_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere/cache")
    assert default_state_dir() == Path("/somewhere/cache/streaming-upload/resumable")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_state_dir() == Path.home() / ".cache/streaming-upload/resumable"
