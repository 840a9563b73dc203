"""Resumable uploads at /files/: tus 1.0 and the IETF draft, streamed into S3 multipart
uploads, with every bit of state in the bucket (docs/resumable.md)."""
