"""Provider profiles (S3_PROVIDER): what each S3-compatible store accepts and guarantees.

Each profile picks the integrity check sent with every part (the store verifies it and
refuses a part that arrived damaged) and what the service can verify in the store's answers.
The service computes the check itself (app/storage/integrity.py); botocore only sends it.
- "md5": Content-MD5 on each part and PutObject. Every store we target verifies it (R2 and
  B2 included). Where ETags are the MD5 of the bytes (and a multipart ETag is the MD5 of the
  parts' MD5s plus "-N"), the service also checks them, which catches a store that stored
  other bytes.
- "crc32c": x-amz-checksum-crc32c (a flexible checksum) on each part and PutObject, computed
  in hardware (awscrt) at a small fraction of an MD5's CPU. AWS, MinIO, Garage, Ceph RGW and
  SeaweedFS verify flexible checksums; B2 refuses x-amz-checksum-* headers. The store echoes
  each part's value, and the completed object's composite CRC32C (of the parts' CRC32Cs) is
  checked too, which stays true under SSE-KMS where ETags are not MD5s.
- "none": nothing, for a store on the same host or on a private network the operator trusts
  ("local", which `python -m app serve` uses for its embedded store). The bytes cross no
  link the operator does not trust, so the digest pass over every byte is skipped and
  nothing is verified beyond TCP's own checks; the answer's whole-file `sha256` is still
  computed, for the uploader to compare.
R2 also requires every part but the last to be the same size.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

Provider = Literal["aws", "b2", "minio", "r2", "generic", "local"]
PartChecksum = Literal["md5", "crc32c", "none"]


@dataclasses.dataclass(frozen=True)
class ProviderProfile:
    name: Provider
    #: The integrity check sent with each part and single PutObject.
    part_checksum: PartChecksum
    #: The store's ETags are MD5 digests (part: of its bytes; multipart: of the parts' MD5s).
    etags_are_md5: bool
    #: Every part but the last must be the same size: a file held for one PutObject is never
    #: allowed to grow past one part, so a multipart upload never starts with a larger part.
    equal_parts: bool
    #: Parts per multipart upload the store accepts.
    max_parts: int = 10_000
    #: PutObject honours If-None-Match: * and If-Match (resumable uploads' leases).
    conditional_writes: bool = False


PROFILES: dict[str, ProviderProfile] = {
    # AWS: ETags are not MD5s under SSE-KMS/SSE-C, so the CRC32C checksums are what we verify.
    "aws": ProviderProfile(
        "aws",
        part_checksum="crc32c",
        etags_are_md5=False,
        equal_parts=False,
        conditional_writes=True,
    ),
    # MinIO verifies flexible checksums; a CRC32C costs far less CPU than an MD5.
    "minio": ProviderProfile(
        "minio",
        part_checksum="crc32c",
        etags_are_md5=False,
        equal_parts=False,
        conditional_writes=True,
    ),
    # B2 refuses x-amz-checksum-* headers; it verifies Content-MD5.
    "b2": ProviderProfile("b2", part_checksum="md5", etags_are_md5=False, equal_parts=False),
    # R2 verifies Content-MD5; its multipart ETags are not MD5 of MD5s.
    "r2": ProviderProfile(
        "r2", part_checksum="md5", etags_are_md5=False, equal_parts=True, conditional_writes=True
    ),
    # Anything else (rclone serve s3, Ceph RGW, SeaweedFS, ...): the most widely supported.
    "generic": ProviderProfile(
        "generic", part_checksum="md5", etags_are_md5=True, equal_parts=False
    ),
    # Same host or a trusted private network (the embedded store): no per-part digest.
    "local": ProviderProfile("local", part_checksum="none", etags_are_md5=False, equal_parts=False),
}
