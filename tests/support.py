"""The body helpers under the names the unit tests of app/forms import; they live in
harness/forms.py (the shipped encoder, app/client/formbody.py, makes every body)."""

from __future__ import annotations

from app.client.formbody import FormField as FieldPart
from harness.forms import BOUNDARY, FilePart, Part, content_type, multipart_body, part_head

__all__ = [
    "BOUNDARY",
    "FieldPart",
    "FilePart",
    "Part",
    "content_type",
    "multipart_body",
    "part_head",
]
