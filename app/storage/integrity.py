"""One upload's integrity checks, as its provider profile says (app/storage/providers.py).

Each part, or the single PutObject, carries a check the store verifies before it keeps the
bytes. The service computes it, over the part's buffer in a worker thread while the loop
goes on receiving (PartBuffer.digest), and hands it to botocore as a ready value, so botocore
computes no checksum of its own:
- "md5": the part's MD5, sent as Content-MD5;
- "crc32c": the part's CRC32C (awscrt: in hardware, GIL released), sent as the
  x-amz-checksum-crc32c header; CreateMultipartUpload asks for CRC32C, so the store also
  keeps a composite checksum of the object (the CRC32C of the parts' CRC32Cs, "-N");
- "none" (the "local" profile): nothing, and the part's bytes are not read here at all.

The store's answers are then checked against what was sent: a part's ETag is the MD5 of its
bytes where the store says so, a part's echoed CRC32C is the one sent, and the completed
object's ETag or composite CRC32C must follow from its parts'. A mismatch means the store
kept other bytes than it was sent: IntegrityFailed, and the upload is undone.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Mapping
from typing import Any

from awscrt.checksums import crc32c

from app.errors import IntegrityFailed
from app.storage.buffers import PartBuffer
from app.storage.providers import ProviderProfile

logger = logging.getLogger("app.storage.integrity")

#: The arguments a part's (or PutObject's) request carried for the store to verify.
Sent = Mapping[str, str]


def md5_of(view: memoryview) -> bytes:
    return hashlib.md5(view).digest()


def crc32c_of(data: bytes | memoryview) -> bytes:
    """The CRC32C of `data` as S3 has it: 4 big-endian bytes (base64 in the header)."""
    return int(crc32c(data)).to_bytes(4, "big")


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


class UploadIntegrity:
    """What one object's requests carry to be verified, and what the answers must say."""

    def __init__(self, provider: ProviderProfile, key: str) -> None:
        self._checksum = provider.part_checksum
        self._etags_are_md5 = provider.etags_are_md5
        self._key = key
        # What each stored part was sent with, by part number, for the composite checks.
        self._parts: dict[int, Sent] = {}
        self._warned_unverified = False

    def create_arguments(self) -> dict[str, str]:
        """For CreateMultipartUpload: the checksum every part will carry, if any (S3 then
        keeps a composite checksum of the object, its default type for multipart)."""
        return {"ChecksumAlgorithm": "CRC32C"} if self._checksum == "crc32c" else {}

    async def arguments(self, body: PartBuffer) -> dict[str, str]:
        """The checksum arguments for a part's (or PutObject's) request: what is sent, and
        what its answer is checked against.

        Given a value, botocore sends it as its header and adds no checksum or aws-chunked
        trailer of its own (under either S3_CHECKSUM_MODE).
        """
        if self._checksum == "md5":
            return {"ContentMD5": b64(await body.digest(md5_of))}
        if self._checksum == "crc32c":
            return {"ChecksumCRC32C": b64(await body.digest(crc32c_of))}
        return {}

    def check_answer(self, what: str, response: dict[str, Any], sent: Sent) -> None:
        """The answer to an UploadPart or PutObject against what was sent with it."""
        md5 = sent.get("ContentMD5")
        if md5 is not None and self._etags_are_md5:
            expected = base64.b64decode(md5).hex()
            etag = str(response.get("ETag", "")).strip('"')
            if etag.lower() != expected:
                raise IntegrityFailed(
                    f"storage answered ETag {etag[:80]!r} for {what} of {self._key}, "
                    f"not the MD5 of the bytes sent ({expected})"
                )
        crc = sent.get("ChecksumCRC32C")
        if crc is None:
            return
        echoed = response.get("ChecksumCRC32C")
        if echoed is None:
            if not self._warned_unverified:
                # The store ignored the checksum: nothing verified this part. Say so once.
                self._warned_unverified = True
                logger.warning(
                    "storage did not confirm the CRC32C of %s: is S3_PROVIDER right?", self._key
                )
        elif str(echoed) != crc:
            raise IntegrityFailed(
                f"storage answered CRC32C {str(echoed)[:80]!r} for {what} of {self._key}, "
                f"not the CRC32C of the bytes sent ({crc})"
            )

    def check_part(self, number: int, response: dict[str, Any], sent: Sent) -> None:
        """Check part `number`'s answer, and keep what the completion is checked against."""
        self.check_answer(f"part {number}", response, sent)
        self._parts[number] = sent

    def remember(self, number: int, sent: Sent) -> None:
        """Part `number` was stored by an earlier request (a resumable upload's) with `sent`."""
        self._parts[number] = sent

    def completion_fields(self, number: int) -> dict[str, str]:
        """What CompleteMultipartUpload lists for part `number` besides its ETag."""
        crc = self._parts.get(number, {}).get("ChecksumCRC32C")
        return {} if crc is None else {"ChecksumCRC32C": crc}

    def check_complete(self, response: dict[str, Any], count: int) -> None:
        """The whole object's ETag or composite checksum against the `count` parts' ones."""
        numbers = sorted(self._parts)
        if self._checksum == "md5" and self._etags_are_md5:
            digests = b"".join(base64.b64decode(self._parts[n]["ContentMD5"]) for n in numbers)
            expected = f"{hashlib.md5(digests).hexdigest()}-{count}"
            etag = str(response.get("ETag", "")).strip('"')
            if etag.lower() != expected:
                raise IntegrityFailed(
                    f"storage answered ETag {etag[:80]!r} for {self._key}, expected {expected} "
                    "from the parts sent"
                )
        composite = response.get("ChecksumCRC32C")
        if self._checksum == "crc32c" and composite is not None:
            crcs = b"".join(base64.b64decode(self._parts[n]["ChecksumCRC32C"]) for n in numbers)
            whole = b64(crc32c_of(crcs))
            value, dash, parts = str(composite).partition("-")
            if value != whole or (dash and parts != str(count)):
                raise IntegrityFailed(
                    f"storage answered CRC32C {str(composite)[:80]!r} for {self._key}, expected "
                    f"{whole}-{count} from the parts sent"
                )
