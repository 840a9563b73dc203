"""Structured logs: one JSON object per line, with the fields passed in `extra`."""

from __future__ import annotations

import json
import logging

import pytest

from app.logs import JsonFormatter, configure_logging


def record(**fields: object) -> logging.LogRecord:
    rec = logging.LogRecord("app.endpoints", logging.INFO, __file__, 1, "upload %s", ("ok",), None)
    if fields:
        rec.fields = fields
    return rec


def test_json_line_has_message_level_logger_and_fields() -> None:
    line = JsonFormatter().format(record(request_id="abc", bytes=10, files=[{"key": "k"}]))
    data = json.loads(line)
    assert data["message"] == "upload ok"
    assert (data["level"], data["logger"]) == ("info", "app.endpoints")
    assert (data["request_id"], data["bytes"], data["files"]) == ("abc", 10, [{"key": "k"}])
    assert data["time"].endswith("+00:00")
    assert "\n" not in line


def test_exceptions_stay_on_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        rec = record()
        rec.exc_info = sys.exc_info()
    data = json.loads(JsonFormatter().format(rec))
    assert "ValueError: boom" in data["exception"]


@pytest.mark.parametrize(("fmt", "is_json"), [("json", True), ("text", False), ("", True)])
def test_log_format_setting(monkeypatch: pytest.MonkeyPatch, fmt: str, is_json: bool) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    monkeypatch.setenv("LOG_FORMAT", fmt)
    try:
        configure_logging(force=True)
        assert isinstance(root.handlers[0].formatter, JsonFormatter) is is_json
    finally:
        root.handlers, _ = saved[0], root.setLevel(saved[1])
