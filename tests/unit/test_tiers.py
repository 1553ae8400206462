"""The unit tier's promise holds: a socket cannot be opened here (tests/unit/conftest.py)."""
import socket

import pytest

from tests.helpers.sockets import SocketInUnitTier


@pytest.mark.parametrize("family, addr", [(socket.AF_INET, ("127.0.0.1", 0)),
                                          (socket.AF_UNIX, "/tmp/qusec-unit-tier.sock")])
def test_no_socket_binds_or_connects_in_the_unit_tier(family, addr) -> None:
    with socket.socket(family) as s:
        with pytest.raises(SocketInUnitTier, match="move this test to tests/integration"):
            s.bind(addr)
        with pytest.raises(SocketInUnitTier):
            s.connect(addr)
