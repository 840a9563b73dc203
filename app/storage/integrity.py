"""One upload's integrity checks, as its provider profile says (app/storage/providers.py).

Each part, or the single PutObject, carries a check the store verifies before it keeps the
bytes: Content-MD5, or a CRC32 checksum; under the "local" profile, none (and no MD5 is
computed). The store's answers are then checked against what
was sent: a part's ETag is the MD5 of its bytes where the store says so, its CRC32 is echoed,
and the completed object's ETag or composite CRC32 must follow from its parts'.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import zlib
from typing import Any

from app.errors import IntegrityFailed
from app.storage.buffers import PartBuffer
from app.storage.providers import ProviderProfile

logger = logging.getLogger("app.storage.integrity")


class UploadIntegrity:
    """What one object's requests carry to be verified, and what the answers must say."""

    def __init__(self, provider: ProviderProfile, key: str) -> None:
        self._checksum = provider.part_checksum
        self._etags_are_md5 = provider.etags_are_md5
        self._key = key
        # What each stored part was checked with, by part number, for the composite checks.
        self._part_md5s: dict[int, bytes] = {}
        self._part_crc32s: dict[int, str] = {}
        self._warned_unverified = False

    def create_arguments(self) -> dict[str, str]:
        """For CreateMultipartUpload: the checksum every part will carry, if any."""
        return {"ChecksumAlgorithm": "CRC32"} if self._checksum == "crc32" else {}

    async def arguments(self, body: PartBuffer) -> tuple[dict[str, str], bytes | None]:
        """The checksum arguments for a part's (or PutObject's) request, and its MD5 if any.

        CRC32 is left to botocore, which computes it while sending (over HTTPS as a trailer,
        which also spares the SHA-256 payload signature); the store checks it and echoes it.
        With no check, the part's bytes are not read here at all.
        """
        if self._checksum == "md5":
            md5 = await body.digest(lambda view: hashlib.md5(view).digest())
            return {"ContentMD5": base64.b64encode(md5).decode()}, md5
        return self.create_arguments(), None

    def check_answer(self, what: str, response: dict[str, Any], md5: bytes | None) -> None:
        """The answer to an UploadPart or PutObject against what was sent with it."""
        if md5 is not None and self._etags_are_md5:
            etag = str(response.get("ETag", "")).strip('"')
            if etag.lower() != md5.hex():
                raise IntegrityFailed(
                    f"storage answered ETag {etag[:80]!r} for {what} of {self._key}, "
                    f"not the MD5 of the bytes sent ({md5.hex()})"
                )
        unconfirmed = self._checksum == "crc32" and "ChecksumCRC32" not in response
        if unconfirmed and not self._warned_unverified:
            # The store ignored the checksum: nothing verified this part. Say so once.
            self._warned_unverified = True
            logger.warning(
                "storage did not confirm the CRC32 of %s: is S3_PROVIDER right?", self._key
            )

    def check_part(self, number: int, response: dict[str, Any], md5: bytes | None) -> None:
        """Check part `number`'s answer, and keep what the completion is checked against."""
        self.check_answer(f"part {number}", response, md5)
        if md5 is not None:
            self._part_md5s[number] = md5
        if "ChecksumCRC32" in response:
            self._part_crc32s[number] = response["ChecksumCRC32"]

    def completion_fields(self, number: int) -> dict[str, str]:
        """What CompleteMultipartUpload lists for part `number` besides its ETag."""
        crc32 = self._part_crc32s.get(number)
        return {} if crc32 is None else {"ChecksumCRC32": crc32}

    def check_complete(self, response: dict[str, Any], count: int) -> None:
        """The whole object's ETag or composite checksum against the `count` parts' ones."""
        if self._checksum == "md5" and self._etags_are_md5:
            digests = b"".join(self._part_md5s[n] for n in sorted(self._part_md5s))
            expected = f"{hashlib.md5(digests).hexdigest()}-{count}"
            etag = str(response.get("ETag", "")).strip('"')
            if etag.lower() != expected:
                raise IntegrityFailed(
                    f"storage answered ETag {etag[:80]!r} for {self._key}, expected {expected} "
                    "from the parts sent"
                )
        composite = response.get("ChecksumCRC32")
        if self._checksum == "crc32" and composite and len(self._part_crc32s) == count:
            crcs = b"".join(
                base64.b64decode(self._part_crc32s[n]) for n in sorted(self._part_crc32s)
            )
            whole = base64.b64encode(zlib.crc32(crcs).to_bytes(4, "big")).decode()
            if str(composite).split("-", 1)[0] != whole:
                raise IntegrityFailed(
                    f"storage answered CRC32 {composite!r} for {self._key}, expected {whole} "
                    "from the parts it confirmed"
                )
