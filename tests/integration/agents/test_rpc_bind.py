"""An agent's gRPC server never shares a port: gRPC's default SO_REUSEPORT would let a second
server bind a port in use and take part of the first one's connections (seen: a relay
neighbour's TLS check failing on a port two servers shared)."""
from __future__ import annotations

import grpc
import pytest

from kms_agents import rpc

pytestmark = pytest.mark.integration


def test_a_second_server_on_a_port_in_use_fails_to_bind():
    first = rpc.Server("127.0.0.1:0", grpc.local_server_credentials())
    try:
        with pytest.raises(OSError, match="cannot listen on 127.0.0.1:.* \\(in use\\?\\)"):
            rpc.Server(f"127.0.0.1:{first.port}", grpc.local_server_credentials())
    finally:
        first.stop(0)
