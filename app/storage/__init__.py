"""Everything that talks to S3: the client and its upload policy, one object's upload, part
buffers and the memory budget, part sizing, provider profiles, the session.

The seed's API stays importable from here: `S3Client.upload_stream()` and `upload_smart()`.
"""

from app.storage.client import S3API, ObjectUpload, S3Client, StoredObject

__all__ = ["S3API", "ObjectUpload", "S3Client", "StoredObject"]
