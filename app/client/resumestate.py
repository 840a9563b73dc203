"""Where `python -m app upload --resumable` remembers an unfinished upload between runs.

One small JSON file per (endpoint, file) in a cache directory, holding the upload's URL and the
file's size and modification time when the upload began. A later run for the same file finds
it and continues (HEAD, then PATCH from the server's offset); a file that has changed since
(other size or mtime) gets a new upload, since the bytes the server holds may no longer be the
file's. The record is written before the first byte is sent and removed once the upload is
complete, so a run killed at any moment leaves either nothing or a record that leads back.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path


def default_state_dir() -> Path:
    """`$XDG_CACHE_HOME/streaming-upload/resumable`, `~/.cache/...` when that is unset."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(cache) / "streaming-upload" / "resumable"


@dataclasses.dataclass(frozen=True)
class FileIdentity:
    """What says a file is still the one an upload began with."""

    path: str  # absolute
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> FileIdentity:
        absolute = os.path.abspath(path)
        info = os.stat(absolute)
        return cls(absolute, info.st_size, info.st_mtime_ns)


@dataclasses.dataclass(frozen=True)
class UploadRecord:
    """An unfinished upload of `file` to `endpoint`, at `url`."""

    endpoint: str
    file: FileIdentity
    url: str


class ResumeState:
    """The records in one directory, one file per (endpoint, absolute path)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _record_path(self, endpoint: str, path: str) -> Path:
        # Hashed: paths hold slashes and any character; the record keeps them in full.
        key = hashlib.sha256(f"{endpoint}\n{path}".encode()).hexdigest()[:32]
        return self.directory / f"{key}.json"

    def find(self, endpoint: str, file: FileIdentity) -> UploadRecord | None:
        """The record for this file at this endpoint, if the file has not changed since."""
        try:
            data = json.loads(self._record_path(endpoint, file.path).read_text(encoding="utf-8"))
            record = UploadRecord(
                endpoint=data["endpoint"],
                file=FileIdentity(data["path"], int(data["size"]), int(data["mtime_ns"])),
                url=data["url"],
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None  # none, or unreadable: a new upload it is
        if record.endpoint != endpoint or record.file != file:
            return None
        return record

    def save(self, record: UploadRecord) -> None:
        """Write the record whole or not at all (a kill mid-write leaves the old one)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self._record_path(record.endpoint, record.file.path)
        data = {
            "endpoint": record.endpoint,
            "path": record.file.path,
            "size": record.file.size,
            "mtime_ns": record.file.mtime_ns,
            "url": record.url,
        }
        temporary = target.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        os.replace(temporary, target)

    def remove(self, endpoint: str, file: FileIdentity) -> None:
        self._record_path(endpoint, file.path).unlink(missing_ok=True)
