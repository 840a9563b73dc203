"""Log lines as JSON objects (LOG_FORMAT=json, the default) or plain text (LOG_FORMAT=text).

One upload's outcome is one line with its fields (request id, client, bytes, parts,
duration, outcome, error code), so a log pipeline can count and alert without parsing prose.
Fields are passed as `extra={"fields": {...}}`; tokens and file contents never are.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(force: bool = False) -> None:
    """Set up the root logger once (or again with `force`), as LOG_FORMAT and LOG_LEVEL say."""
    root = logging.getLogger()
    if root.handlers and not force:
        return
    handler = logging.StreamHandler()
    if os.environ.get("LOG_FORMAT", "json").strip().lower() == "text":
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    else:
        handler.setFormatter(JsonFormatter())
    root.handlers = [handler]
    root.setLevel(os.environ.get("LOG_LEVEL", "info").upper())
