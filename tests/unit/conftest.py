from __future__ import annotations

import pytest

from tests.unit.asgi import Clock


@pytest.fixture
async def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The running loop's clock, moved only by the test (tests/unit/asgi.py)."""
    return Clock(monkeypatch)
