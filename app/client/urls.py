"""The service's URL as the client tools take it: a bare server (`http://host:8000`) gets the
endpoint's path, a full URL is used as given."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


class UsageError(ValueError):
    """The command line or environment asks for something impossible; exit status 2."""


def endpoint_url(url: str, default_path: str) -> str:
    """`url`, with `default_path` added when it names only a server."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"not an http(s) URL: {url!r}")
    if parts.path in ("", "/"):
        parts = parts._replace(path=default_path)
    return urlunsplit(parts)
