"""Unit tier: pure logic. No sockets: a guard (tests/helpers/sockets.py) makes every socket
connect/bind/listen in this process fail, so a test that needs one belongs in tests/integration.
Unit tests may write files in their tmp dirs (SQLite key stores, configs) and run our own CLI as
a short subprocess."""
from __future__ import annotations

import pytest

from tests.helpers.sockets import refuse_sockets


@pytest.fixture(autouse=True)
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    refuse_sockets(monkeypatch)
