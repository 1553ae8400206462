"""The unit tier's socket guard: while it is on, every socket connect/bind/listen fails."""
from __future__ import annotations

import socket

import pytest


class SocketInUnitTier(RuntimeError):
    """A unit test tried to use the network."""


def _refuse(self: socket.socket, *args: object) -> None:
    raise SocketInUnitTier(f"the unit tier opens no sockets ({self.family.name} {args!r}); "
                           "move this test to tests/integration")


def refuse_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("connect", "connect_ex", "bind", "listen"):
        monkeypatch.setattr(socket.socket, name, _refuse)
