"""app/cors.py and the UPLOAD_CORS_* settings it reads."""

from __future__ import annotations

import pytest
from starlette.middleware.cors import CORSMiddleware

from app.cors import ALLOWED_HEADERS, EXPOSED_HEADERS, cors_middleware
from app.settings import Settings, SettingsError

BUCKET = {"S3_BUCKET": "my-bucket"}


def from_env(**extra: str) -> Settings:
    return Settings.from_env({**BUCKET, **extra})


def test_no_origins_no_middleware() -> None:
    assert from_env().cors_origins == ()
    assert cors_middleware(from_env()) == []


def test_origins_are_read_as_browsers_send_them() -> None:
    settings = from_env(UPLOAD_CORS_ORIGINS=" https://App.example.com, http://localhost:8080 ,")
    assert settings.cors_origins == ("https://app.example.com", "http://localhost:8080")
    [middleware] = cors_middleware(settings)
    assert middleware.cls is CORSMiddleware
    assert middleware.kwargs["allow_origins"] == list(settings.cors_origins)
    assert middleware.kwargs["allow_credentials"] is False
    assert middleware.kwargs["max_age"] == 600


@pytest.mark.parametrize(
    "origins",
    ["app.example.com", "https://app.example.com/upload", "ftp://app.example.com", "https://"],
)
def test_what_is_not_an_origin_is_refused(origins: str) -> None:
    with pytest.raises(SettingsError, match="UPLOAD_CORS_ORIGINS"):
        from_env(UPLOAD_CORS_ORIGINS=origins)


def test_credentials_with_any_origin_are_refused() -> None:
    from_env(UPLOAD_CORS_ORIGINS="*")
    from_env(UPLOAD_CORS_ORIGINS="https://app.example.com", UPLOAD_CORS_CREDENTIALS="on")
    with pytest.raises(SettingsError, match="UPLOAD_CORS_CREDENTIALS"):
        from_env(UPLOAD_CORS_ORIGINS="*", UPLOAD_CORS_CREDENTIALS="on")


def test_resumable_protocols_headers_are_allowed_and_exposed() -> None:
    for header in ("Authorization", "Tus-Resumable", "Upload-Offset", "Upload-Complete"):
        assert header in ALLOWED_HEADERS
    for header in ("Location", "Upload-Offset", "Upload-Limit", "Tus-Max-Size", "X-Request-ID"):
        assert header in EXPOSED_HEADERS
